"""docs/training.md's config reference is generated from agr_jax/defaults.py and kept current."""

import pytest

from agr_jax import config_docs, defaults


def test_reference_in_docs_is_up_to_date():
    document = config_docs.DOC.read_text()
    assert config_docs.render(document, config_docs.reference()) == document, (
        f"docs/training.md's config reference is stale: run `{config_docs.REGENERATE}`")


def test_every_default_key_is_listed_with_its_default():
    text = config_docs.reference()
    for key, value, _ in config_docs._leaves(defaults.get_config()):
        row = next(line for line in text.splitlines() if line.startswith(f"| `{key}` |"))
        assert (repr(value) if value is not None else "unset") in row


def test_comments_are_read_from_above_and_beside_the_assignment():
    source = '''
def get_config():
    c = ConfigDict()
    # Block comment
    # over two lines.
    c.a = 1  # and a trailing one
    c.b = 2

    # not attached: a blank line separates it

    c.sub.d = 3
'''
    assert config_docs.key_comments(source) == {
        "a": "Block comment over two lines. and a trailing one", "b": "", "sub.d": ""}


def test_render_replaces_only_between_markers_and_needs_both():
    doc = f"prose\n{config_docs.BEGIN}\nold\n{config_docs.END}\nmore prose\n"
    assert config_docs.render(doc, "new") == (
        f"prose\n{config_docs.BEGIN}\nnew\n{config_docs.END}\nmore prose\n")
    with pytest.raises(ValueError, match="marker"):
        config_docs.render("prose without markers", "new")
