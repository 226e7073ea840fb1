"""The classroom: hand chapters out, collect them, and grade a whole class with one command.

    python -m attnkit.classroom handout 08 09 --lang zh --out handout/
    python -m attnkit.classroom grade returned/ --out report.html --csv report.csv --lang zh

``handout`` writes learner copies of the chosen chapters (outputs cleared) and a README for
learners, never overwriting a file already there. ``grade`` executes every returned notebook on
a copy, in a fresh kernel in a sandbox of its own (:mod:`attnkit.classroom.isolation`), with a
time limit per notebook, two notebooks at a time, its check cells restored from the handout, and
reads the outcome record each restored check cell publishes (:data:`attnkit.exercises.OUTCOME_MIME`):
nothing is parsed from the feedback's prose, and no submission is written to. It writes an HTML
report (opens offline) and a CSV, in the teacher's language. Cells tagged ``grade-skip`` that a
learner left unchanged are not run; see :mod:`attnkit.classroom.grading`.

Both commands read the course's built notebooks from a checkout of the course
(:func:`attnkit.classroom.originals.chapters_dir`): they are not part of the wheel.
"""

from attnkit.classroom.grading import STATUSES, Graded, Result, grade
from attnkit.classroom.handout import handout
from attnkit.classroom.originals import ClassroomError, chapters_dir, load_original
from attnkit.classroom.report import csv_rows, html_report, write_csv, write_html

__all__ = ["STATUSES", "ClassroomError", "Graded", "Result", "chapters_dir", "csv_rows", "grade", "handout",
           "html_report", "load_original", "write_csv", "write_html"]
