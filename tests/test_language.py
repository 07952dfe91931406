"""
The grader's feedback in the course's language (normgrade.language.speaking).

Within speaking(a language), every message the scorer composes for a student
comes from that language's catalog, with its fields filled in; what decides a
point or a mistake's key never reads a message, so the diagnosis keys the
class report counts stay the English ones, and a stub's NotImplementedError is
known in any language. The catalogs here are tiny ones made for the test (the
real ones are filled elsewhere): normgrade.language.translations is patched.
"""
import gettext
import io
import re

import pytest
from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo

from normgrade import language as languages
from normgrade.language import speaking
from normgrade.run.sandbox import Limits
from normgrade.score import checks, diagnosis, scorer

STUB = scorer.STUB_MESSAGE
ZH = {  # a few messages as a translator might give them
    "the variance is the unbiased one (dividing by N - 1); normalization divides by N":
        "方差用的是无偏估计（除以 N - 1）；归一化除以 N",
    ": {difference}. Diagnosis: {diagnosis}": "：{difference}。诊断：{diagnosis}",
    "{function}: {earned:g} / {total:g} points": "{function}：{earned:g} / {total:g} 分",
    "- lost {points:g} on '{check}': {why}": "- 在“{check}”上失去 {points:g} 分：{why}",
    "train-mode output": "训练模式的输出",
    "raised {error}": "抛出了 {error}",
    STUB: "{name} 尚未实现：请在 normlab/layers.py 中编写",
    "{score:g} of {out_of:g} auto-graded points": "自动评分 {score:g} / {out_of:g} 分",
    "graded in: {sandbox}": "评分环境：{sandbox}",
    "Points: {points:g} of {max_points:g}": "得分：{points:g} / {max_points:g}",
}


def _translations(messages, locale="zh_CN"):
    """A gettext translations object of `messages` {English: translated}, compiled in memory."""
    catalog = Catalog(locale=locale, domain=languages.DOMAIN)
    for english, translated in messages.items():
        catalog.add(english, translated)
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return gettext.GNUTranslations(compiled)


@pytest.fixture
def catalog(monkeypatch):
    """catalog(messages): zh_CN speaks `messages` (and only those) until the test ends."""
    real = languages.translations

    def use(messages):
        fake = _translations(messages)
        monkeypatch.setattr(languages, "translations", lambda code: fake if code == "zh_CN" else real(code))

    return use


@pytest.fixture
def zh(catalog):
    catalog(ZH)


def _unbiased(data):
    """bn_train_out as code that normalizes with the unbiased variance computes it: a typical mistake."""
    hypotheses, _layer = diagnosis.probe("bn_train_out", data.inputs, checks.CALL_OF["bn_train_out"])
    return next(h.value for h in hypotheses if h.parts == (("variance", "unbiased"),))


def _values(data, function, **changed):
    values = {q: data.expected(q) for check in checks.checks_for(function) for q in check.quantities}
    return {**values, **changed}


def test_a_typical_mistake_is_said_in_the_course_language_and_keeps_its_english_key(data, zh):
    values = _values(data, "batchnorm_forward", bn_train_out=_unbiased(data))
    english = checks.score("batchnorm_forward", values, data)
    with speaking("zh_CN"):
        translated = checks.score("batchnorm_forward", values, data)
        report = " ".join(checks.report("batchnorm_forward", translated).split())
    assert [(r.earned, r.mistake) for r in translated] == [(r.earned, r.mistake) for r in english]
    (lost,) = [r for r in translated if r.message]
    assert lost.mistake == diagnosis.key((("variance", "unbiased"),)) == "variance: unbiased"
    (said,) = [r.message for r in english if r.message]
    assert said.startswith("bn_train_out differs from the expected values: ") and said.endswith(
        ". Diagnosis: the variance is the unbiased one (dividing by N - 1); normalization divides by N")
    # What the catalog translates is said in its words; the rest (not translated yet) stays English.
    assert lost.message.startswith("bn_train_out differs from the expected values：")
    assert lost.message.endswith("。诊断：方差用的是无偏估计（除以 N - 1）；归一化除以 N") and "Diagnosis" not in lost.message
    assert report.startswith("batchnorm_forward：4.5 / 6 分 - 在“训练模式的输出”上失去 1.5 分：bn_train_out")
    assert "lost" not in report and "points" not in report


def test_english_is_spoken_outside_speaking_and_after_it(data, zh):
    values = _values(data, "batchnorm_forward", bn_train_out=_unbiased(data))
    with speaking("zh_CN"):
        pass
    said = checks.report("batchnorm_forward", checks.score("batchnorm_forward", values, data))
    assert said.startswith("batchnorm_forward: 4.5 / 6 points\n  - lost 1.5 on 'train-mode output': bn_train_out")


def test_not_implemented_is_known_by_the_exception_raised_not_by_its_words(data, zh):
    error = "NotImplementedError: " + ZH[STUB].format(name="batchnorm_forward")
    with speaking("zh_CN"):
        raised = checks.Failure(scorer._describe_error(error, Limits()), raised=scorer._raised(error))
        other = checks.Failure(scorer._describe_error("ValueError: 坏了", Limits()), raised=scorer._raised("ValueError: 坏了"))
        stub = checks.score("batchnorm_forward", {q: raised for q in _values(data, "batchnorm_forward")}, data)
        raising = checks.score("batchnorm_forward", {q: other for q in _values(data, "batchnorm_forward")}, data)
    assert raised.message == "抛出了 " + error and raised.raised == "NotImplementedError"
    assert {r.mistake for r in stub} == {checks.NOT_IMPLEMENTED} and {r.mistake for r in raising} == {"raises"}
    assert all(r.earned == 0 and "抛出了 NotImplementedError: batchnorm_forward 尚未实现" in r.message for r in stub)
    assert scorer._raised("MemoryError: ") == "" and scorer._raised("  ") == "?"


def test_a_stub_s_error_is_known_in_every_language_and_costs_no_budget(catalog):
    catalog({STUB: "{name} 尚未实现：请在 normlab/layers.py 中编写"})
    chinese = "NotImplementedError: batchnorm_forward 尚未实现：请在 normlab/layers.py 中编写"
    english = "NotImplementedError: batchnorm_forward is not implemented yet: write it in normlab/layers.py"
    assert scorer.is_stub_error(chinese) and scorer.is_stub_error(english)
    for other in ("NotImplementedError: batchnorm_forward 尚未实现", "ValueError: " + chinese[21:],
                  "NotImplementedError: " + "x" * 41 + " is not implemented yet: write it in normlab/layers.py"):
        assert not scorer.is_stub_error(other), other
    said = scorer.StudentText(budget=10)
    assert said(chinese) == chinese and said(english) == english and said.left == 10
    # A translation longer than the worker's cut is known cut where the worker cuts it (worker.error_text).
    catalog({STUB: "{name} " + "还没有写" * 50})
    long = "NotImplementedError: spatial_groupnorm_backward " + "还没有写" * 50
    assert scorer.is_stub_error(long[:160] + " ...") and not scorer.is_stub_error(long[:150] + " ...")


def test_a_stub_translated_by_the_release_is_graded_in_its_language(tmp_path, data, sandbox, zh):
    from normgrade.paths import STUB_LAYERS

    english = STUB_LAYERS.read_text()
    stub = re.sub(r'NotImplementedError\("(\w+) is not implemented yet: write it in normlab/layers\.py"\)',
                  lambda m: f'NotImplementedError("{ZH[STUB].format(name=m[1])}")', english)
    assert stub != english
    path = tmp_path / "layers.py"
    path.write_text(stub, encoding="utf-8")
    with speaking("zh_CN"):
        scores = scorer.score_code(path, ["batchnorm_forward", "layernorm_forward"], data, sandbox,
                                   Limits(call_seconds=3))
    for function, results in scores.items():
        assert {(r.earned, r.mistake) for r in results} == {(0.0, checks.NOT_IMPLEMENTED)}, function
        assert all(f"抛出了 NotImplementedError: {function} 尚未实现" in r.message for r in results), function


def test_every_check_label_is_a_message_and_is_shown_in_the_language(zh):
    from babel.messages.extract import extract_from_file

    found = {message for _line, message, _comments, _context in extract_from_file(
        "python", checks.__file__, keywords={"_": None, "N_": None, "ngettext": (1, 2)})}
    labels = {check.template or check.label for check in checks.CHECKS} - {"dx"}  # "dx" alone is a name
    wheres = {value for check in checks.CHECKS for _name, value in check.fields if isinstance(value, str)}
    assert labels | wheres <= found, sorted((labels | wheres) - found)
    edge = next(check for check in checks.CHECKS if check.template)
    assert edge.said() == edge.label == ("dx, dgamma and dbeta with eps = 0.01 from bn_param, for a square batch "
                                         "(N = D), and for float32 input (dtype and values)")
    with speaking("zh_CN"):
        assert checks.CHECKS[0].said() == "训练模式的输出" and checks.CHECKS[0].label == "train-mode output"


def test_gradescope_and_the_graded_cells_speak_the_course_language(tmp_path, zh):
    from normgrade.grade.preprocessors import _outputs, course_of
    from normgrade.platforms.gradescope import requirements, results_document

    course = tmp_path / "course"
    (course / "source" / "normalization" / "normlab" / "locale").mkdir(parents=True)
    assert languages.course_language(course_of(course / "normgrade" / "expected.npz")) == "en"
    (course / "source" / "normalization" / "normlab" / "locale" / "COURSE_LANGUAGE").write_text("zh_CN\n")
    assert languages.course_language(course_of(course / "normgrade" / "expected.npz")) == "zh_CN"
    with speaking("zh_CN"):
        document = results_document([{"name": "a/test_x", "score": 1.0, "max_score": 2.0, "output": "x"}], [],
                                    "bubblewrap sandbox", "visible", 1.0)
        points = _outputs("x", 1.5, 2)[1]["data"]["text/html"]
    assert document["output"] == "自动评分 1 / 2 分\n评分环境：bubblewrap sandbox"
    assert points == "<strong>得分：1.5 / 2</strong>" and _outputs("x", 1.5, 2)[1]["data"]["text/html"] == (
        "<strong>Points: 1.5 of 2</strong>")
    assert "babel==" in requirements("zh_CN") and "babel" not in requirements()


def test_the_stub_message_is_the_one_the_stubs_raise():
    from normgrade.paths import STUB_LAYERS

    raised = re.findall(r'raise NotImplementedError\("([^"]*)"\)', STUB_LAYERS.read_text())
    assert raised and all(STUB.format(name=name) in raised for name in checks.FUNCTIONS)
