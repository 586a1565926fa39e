"""Tag validation of Reflection-format answers and plain-CoT answers."""

from __future__ import annotations

import pytest

from reflectkit.synth.reflection_format import TAG_TOKENS, validate_plain_cot, validate_reflection

GOOD = "<thinking>2+2 is 5. <reflection>No: 2+2 is 4.</reflection> So 4.</thinking>\n<output>4</output>"


def test_well_formed_with_reflection_returns_parts() -> None:
    fc = validate_reflection(GOOD)
    assert fc.ok and fc.reason is None
    assert fc.output == "4"
    assert fc.reflections == ("No: 2+2 is 4.",)
    assert fc.thinking.startswith("2+2 is 5.")


def test_well_formed_without_reflection() -> None:
    fc = validate_reflection("  <thinking>plan</thinking><output>answer</output>\n")
    assert fc.ok and fc.reflections == () and fc.output == "answer"


@pytest.mark.parametrize(
    "text, reason",
    [
        ("<output>4</output>", "<output> before <thinking> (or <thinking> missing)"),
        ("<thinking>x</thinking>", "missing <output>"),
        ("<thinking>x<output>4</output></thinking>", "<output> nested inside <thinking>"),
        ("<thinking>x</thinking><output>4 <thinking>y</thinking></output>", "<thinking> nested inside <output>"),
        ("<thinking>a<reflection>b<reflection>c</reflection></reflection></thinking><output>4</output>",
         "<reflection> nested inside <reflection>"),
        ("<thinking>x</thinking><reflection>r</reflection><output>4</output>", "<reflection> outside <thinking>"),
        ("<thinking>x</thinking><output>4</output><output>5</output>", "duplicated <output>"),
        ("<thinking>x</thinking><thinking>y</thinking><output>4</output>", "duplicated <thinking>"),
        ("<thinking>x</thinking><output>  </output>", "empty <output>"),
        ("<thinking> \n</thinking><output>4</output>", "empty <thinking>"),
        ("<thinking>x<reflection></reflection></thinking><output>4</output>", "empty <reflection>"),
        ("Sure! <thinking>x</thinking><output>4</output>", "text outside tags before <thinking>: 'Sure!'"),
        ("<thinking>x</thinking> so <output>4</output>", "text outside tags before <output>: 'so'"),
        ("<thinking>x</thinking><output>4</output> Hope this helps", "text outside tags after </output>: 'Hope this helps'"),
        ("<thinking>x<output>4</thinking></output>", "<output> nested inside <thinking>"),
        ("<thinking>x<reflection>y</thinking></reflection><output>4</output>",
         "</thinking> closes <reflection> (improperly nested tags)"),
        ("<thinking>x</thinking><output>4", "<output> is not closed"),
        ("x</thinking><output>4</output>", "</thinking> without an opening <thinking>"),
        ("", "empty response"),
        ("just an answer: 4", "missing <thinking>"),
    ],
)
def test_malformed_reasons(text: str, reason: str) -> None:
    fc = validate_reflection(text)
    assert not fc.ok
    assert fc.reason == reason


def test_tag_tokens_are_the_six_glaive_tags() -> None:
    assert TAG_TOKENS == ("<thinking>", "</thinking>", "<reflection>", "</reflection>", "<output>", "</output>")


def test_plain_cot() -> None:
    fc = validate_plain_cot("48 / 2 = 24 in May.\n48 + 24 = 72.\n#### 72\n")
    assert fc.ok and fc.output == "72" and fc.thinking.endswith("48 + 24 = 72.")
    assert validate_plain_cot("The answer is 72.").reason == "no final '#### <answer>' line"
    assert validate_plain_cot("#### 72").reason == "no reasoning before the final '####' line"
    assert validate_plain_cot("a\n#### 72\nmore").reason == "text after the final '####' line: 'more'"
    assert "Reflection tag" in (validate_plain_cot("<thinking>a</thinking>\n#### 1").reason or "")
