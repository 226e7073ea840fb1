"""What the course's website says around the chapters (``make site``, ``tools/site.py``).

The pages' interface text (links, labels, the search box, the line under a live explorer's
static figure) in both languages, registered like every other string the course prints. Only
``site.*`` keys live here, and ``site.*`` keys live only here.
"""

from attnkit.i18n import register

register({
    "site.title": {"en": "attnkit: attention, written plainly", "zh": "attnkit：把注意力机制写清楚"},
    "site.tagline": {"en": "A bilingual course on attention mechanisms in PyTorch, one notebook per chapter.",
                     "zh": "一门讲 PyTorch 注意力机制的双语课程，每章一个笔记本。"},
    # the language link shows the other language's name in that language: 简体中文 on an English page
    "site.lang_name": {"en": "English", "zh": "简体中文"},
    "site.skip": {"en": "Skip to the chapter", "zh": "跳到正文"},
    "site.contents": {"en": "Contents", "zh": "目录"},
    "site.chapters": {"en": "Chapters", "zh": "各章"},
    "site.on_this_page": {"en": "In this chapter", "zh": "本章各节"},
    "site.home": {"en": "All chapters", "zh": "全部章节"},
    "site.search": {"en": "Search the course", "zh": "搜索课程"},
    "site.search_hint": {"en": "for example softmax, RoPE, KV cache", "zh": "例如 注意力、旋转位置编码、KV 缓存"},
    "site.results": {"en": "{n} sections found", "zh": "找到 {n} 节"},
    "site.no_results": {"en": "Nothing found", "zh": "没有找到"},
    "site.prev": {"en": "Previous: {title}", "zh": "上一章：{title}"},
    "site.next": {"en": "Next: {title}", "zh": "下一章：{title}"},
    "site.chapter_nav": {"en": "Previous and next chapter", "zh": "上一章与下一章"},
    "site.notebook": {"en": "Download this chapter's notebook (run it in Jupyter to move the explorers' controls)",
                      "zh": "下载本章的笔记本（在 Jupyter 中运行，即可拖动交互图的控件）"},
    "site.live_explorer": {"en": "The notebook has the live explorer: its controls redraw this figure. "
                                 "Here it is drawn once, at the explorer's starting values.",
                           "zh": "笔记本里是可交互的版本：拖动控件，这张图会随之重画。这里只画出控件初始值下的一张。"},
    "site.offline": {"en": "This site works offline: math, search and figures need no network.",
                     "zh": "本网站可离线使用：公式、搜索和插图都不需要联网。"},
    "site.licence": {"en": "Code MIT; assets and their licences in assets/LICENSES.txt.",
                     "zh": "代码采用 MIT 许可；附带资源及其许可见 assets/LICENSES.txt。"},
})
