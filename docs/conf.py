"""Sphinx configuration of the florin documentation.

Build (warnings are errors, as in CI)::

    python -m sphinx -W -b html docs docs/_build/html

The API reference pages (``docs/api/``) are generated at build time from the
modules that exist (see ``_ext/florin_api.py``), so the site follows the
package as features land; the CLI reference is generated from the typer app
(``_ext/florin_cli.py``).
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "_ext"))
sys.path.insert(0, os.path.dirname(HERE))

import florin  # noqa: E402

project = "florin"
author = "florin developers"
copyright = "florin developers"  # noqa: A001
release = florin.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
    "numpydoc",
    "myst_parser",
    "florin_api",
    "florin_cli",
    "florin_bench",
]
# The plugin-author guide is maintained as its own extension/page by the plugins work;
# load it when it is there.
for _name in ("florin_plugin_guide", "plugin_guide"):
    if os.path.exists(os.path.join(HERE, "_ext", _name + ".py")):
        extensions.append(_name)

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_scripts", "Thumbs.db", ".DS_Store", "**/.ipynb_checkpoints"]
templates_path = []

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# autodoc + numpydoc: the API reference comes from the numpydoc docstrings.
autodoc_member_order = "bysource"
autodoc_typehints = "none"
autodoc_default_options = {"show-inheritance": False}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_validation_checks = set()
numpydoc_xref_param_type = False

# Offline builds: no intersphinx inventories are fetched unless asked for.
intersphinx_mapping = {}
if os.environ.get("FLORIN_DOCS_INTERSPHINX"):
    intersphinx_mapping = {
        "python": ("https://docs.python.org/3", None),
        "numpy": ("https://numpy.org/doc/stable", None),
        "xarray": ("https://docs.xarray.dev/en/stable", None),
    }

html_theme = "furo"
html_title = f"florin {release}"
html_static_path = ["_static"]
html_css_files = ["wrap-code.css"]  # long code lines wrap (no horizontal scrollbar)
html_theme_options = {
    "source_repository": "",
    "navigation_with_keys": True,
}
html_show_sourcelink = False


def _plugin_guide_pages(srcdir):
    """Docs pages of the plugin-author guide (written by the plugins work), if any."""
    import glob

    for main in ("plugin-guide.rst", "plugin-guide.md", "plugins/index.rst", "plugins/index.md"):
        if os.path.exists(os.path.join(srcdir, main)):
            return [os.path.splitext(main)[0]]  # the guide has its own toctree for its sub-pages
    pages = []
    for pattern in ("plugin*.md", "plugin*.rst", "plugins/*.md", "plugins/*.rst"):
        for path in sorted(glob.glob(os.path.join(srcdir, pattern))):
            pages.append(os.path.splitext(os.path.relpath(path, srcdir))[0].replace(os.sep, "/"))
    return pages


def _add_plugin_guide(app, docname, source):
    # extending.md lists the plugin guide's pages once they exist (no empty-glob warning before).
    if docname == "extending":
        pages = _plugin_guide_pages(app.srcdir)
        if pages:
            source[0] += "\n```{toctree}\n:maxdepth: 2\n\n" + "\n".join(pages) + "\n```\n"


def setup(app):
    app.connect("source-read", _add_plugin_guide)
