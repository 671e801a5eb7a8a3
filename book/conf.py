"""Sphinx configuration of the course book: MyST-NB executes every notebook against the prepared records."""
import os

project = "asdkit: training-time backdoor defenses"
author = "the asdkit developers"
extensions = ["myst_nb", "sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.mathjax"]
exclude_patterns = ["_build", "**.ipynb_checkpoints"]
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3
suppress_warnings = ["myst.header"]

nb_execution_mode = "force"  # every notebook executed at the book's scale ($ASDKIT_SCALE), against the prepared records
nb_execution_timeout = int(os.environ.get("ASDKIT_BOOK_TIMEOUT", "3600"))
nb_execution_raise_on_error = True
nb_execution_show_tb = True
# a page has no kernel: an explorer shows its first state (its static image and label) instead of a widget view
nb_mime_priority_overrides = [("html", "application/vnd.jupyter.widget-view+json", None)]

autodoc_member_order = "bysource"
autodoc_typehints = "description"
napoleon_numpy_docstring = True

html_theme = "sphinx_book_theme"
html_title = "asdkit course"
html_theme_options = {"show_toc_level": 2, "use_download_button": True, "use_fullscreen_button": False}
html_last_updated_fmt = None

if os.environ.get("ASDKIT_BOOK_MATHJAX"):  # a local copy of MathJax in _static (book/build.py fetches it from npm)
    html_static_path = ["_static"]
    mathjax_path = os.environ["ASDKIT_BOOK_MATHJAX"]
