"""Root conftest: applies to tests/ and to the notebooks nbval collects from chapters/.

nbval 0.11 executes cells with ``store_history=False``. IPython decides whether a trailing ``;``
hides a cell's value by looking at the last *stored* input, so under nbval the semicolon is
ignored and a value the reader never sees in JupyterLab (or in the built notebook) appears,
failing the strict comparison. Execute as JupyterLab and nbclient do: with history.
"""

import nbval.kernel


def _execute_cell_input(self, cell_input, allow_stdin=None):
    return self.kc.execute(cell_input, store_history=True, allow_stdin=allow_stdin, stop_on_error=False)


nbval.kernel.RunningKernel.execute_cell_input = _execute_cell_input
