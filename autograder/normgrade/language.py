"""
The languages a course can be given in: one English source, GNU gettext catalogs for the others.

Every text a student reads has its English source in this repository and its
translations in assignment/normlab/locale/<language>/LC_MESSAGES/normlab.po,
one catalog per language (managed with Babel: `make catalogs` extracts the
messages with babel.cfg and updates the catalogs; `make` compiles them). The
units of a catalog are:

- the messages the student package and the scorer print, marked with _() /
  ngettext() / N_() in their Python source (Babel's own extractor);
- each paragraph of the notebooks' Markdown cells and each block of full-line
  comments in their code cells, outside solution regions (extract_notebook);
- each paragraph of every docstring of the stubs' normlab/layers.py
  (extract_docstrings).

`normgrade release --language zh_CN` builds the release from the English
source through the catalog (translate_notebook, translate_docstrings) and
ships every catalog compiled into the student package, with the course's
language as its default (normlab.i18n reads it). Code, names and numbers are
never in a message: a message's format fields ({name}) and code spans are the
same in every language (tests/test_language.py).
"""
import ast
import contextlib
import contextvars
import functools
import gettext
import io
import itertools
import json
import re
from pathlib import Path

from normgrade.paths import STUDENT_PACKAGE

SOURCE_LANGUAGE = "en"
LANGUAGES = ("en", "zh_CN", "vi")  # the source, then the languages with a complete catalog
DOMAIN = "normlab"
LOCALE = STUDENT_PACKAGE / "locale"
COURSE_LANGUAGE_FILE = "COURSE_LANGUAGE"  # in a release's normlab/locale/: the course's language
# The value of <html lang="..."> for each language (BCP 47).
HTML_LANG = {"en": "en", "zh_CN": "zh-CN", "vi": "vi"}


def check_language(text):
    """`text` if it is a language a course can be given in; else ValueError saying which are."""
    if text not in LANGUAGES:
        raise ValueError(f"unknown language {text!r}: a course can be given in {', '.join(LANGUAGES)} "
                         f"(a new one needs its catalog, {LOCALE.name}/<language>/LC_MESSAGES/{DOMAIN}.po)")
    return text


def catalog_path(language):
    return LOCALE / language / "LC_MESSAGES" / f"{DOMAIN}.po"


def read_catalog(language):
    """The Babel catalog of `language`, read from its .po file."""
    from babel.messages.pofile import read_po

    with open(catalog_path(language), "rb") as po:
        return read_po(po, locale=language, domain=DOMAIN)


# The messages normlab's own code prints: its modules' and the diagnosis's words, which mistakes.npz carries,
# and the notebooks' code cells' (i18n._("...")); a notebook's other text and a docstring's are translated into
# the release itself, and the grader's own messages stay with the grader.
STUDENT_SIDE = ("assignment/normlab/", "autograder/normgrade/score/diagnosis.py")
CODE_CELL = "(code)"  # the end of extract_notebook's note on a message of a notebook's code cell


def printed_by_normlab(message):
    """Whether a catalog's message is one normlab's code (or a notebook's code cell) prints."""
    return any(path.startswith(STUDENT_SIDE) for path, _line in message.locations) or any(
        note.endswith(CODE_CELL) for note in message.auto_comments)


def compile_catalogs(locale_dir, languages=LANGUAGES[1:], student_side=False):
    """
    Write every language's compiled catalog (.mo) under `locale_dir`, from its
    .po (never an older .mo); with student_side, only the messages normlab's
    code prints (STUDENT_SIDE), as a release ships them.
    """
    from babel.messages.mofile import write_mo

    for language in languages:
        catalog = read_catalog(language)
        if student_side:
            for message in list(catalog):
                if message.id and not printed_by_normlab(message):
                    del catalog[message.id]
        target = Path(locale_dir) / language / "LC_MESSAGES" / f"{DOMAIN}.mo"
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "wb") as mo:
            write_mo(mo, catalog)


@functools.lru_cache(maxsize=None)
def translations(language):
    """A gettext translations object for `language`, compiled from its .po in memory (English: the source)."""
    check_language(language)
    if language == SOURCE_LANGUAGE:
        return gettext.NullTranslations()
    from babel.messages.mofile import write_mo

    compiled = io.BytesIO()
    write_mo(compiled, read_catalog(language))
    compiled.seek(0)
    return gettext.GNUTranslations(compiled)


# ---- units of text: Markdown paragraphs, comment blocks, docstring paragraphs ----------------------

_SOLUTION = re.compile(r"^[ \t]*### (BEGIN|END) SOLUTION[ \t]*$")
_CODE_OR_MATH = re.compile(r"\$\$.*?\$\$|\$[^$\n]+\$|`[^`\n]*`", re.S)


def worth_translating(text):
    """Whether a unit has words outside its code spans and formulas (a formula alone is not translated)."""
    return re.search(r"[A-Za-z]{2,}", _CODE_OR_MATH.sub("", text)) is not None


def _segments(lines):
    """[(is_solution, lines)] of a cell's lines: solution regions (markers included) are kept as they are."""
    segments, inside = [], False
    for line in lines:
        marker = _SOLUTION.match(line)
        if marker and marker[1] == "BEGIN":
            inside = True
        if not segments or segments[-1][0] != inside:
            segments.append((inside, []))
        segments[-1][1].append(line)
        if marker and marker[1] == "END":
            inside = False
    return segments


def _paragraphs(lines):
    """[(is_text, lines)]: the paragraphs of Markdown lines and the blank lines between them."""
    return [(text, list(run)) for text, run in itertools.groupby(lines, key=lambda line: bool(line.strip()))]


_COMMENT = re.compile(r"^(?P<indent>[ \t]*)# ?(?P<text>.*)$")


def _comment_indent(line):
    """The indentation of a full-line comment with words (not #! or ##); None for any other line."""
    match = _COMMENT.match(line)
    comment = match is not None and not line.lstrip().startswith(("#!", "##")) and match["text"].strip() != ""
    return match["indent"] if comment else None


def _comment_blocks(lines):
    """[(indent or None, lines)]: runs of full-line comments (indent given) and the code between them."""
    return [(indent, list(run)) for indent, run in itertools.groupby(lines, key=_comment_indent)]


def cell_units(cell_type, source):
    """
    Walk a notebook cell's source as [(unit or None, text)]: `text` is a piece
    of the source, `unit` the message it is the English of (None: kept as it is).
    Joining the texts gives the source back.
    """
    pieces = []
    for solution, lines in _segments(source.splitlines(keepends=True)):
        if solution:
            pieces.append((None, "".join(lines)))
            continue
        if cell_type == "markdown":
            for text, paragraph in _paragraphs(lines):
                joined = "".join(paragraph)
                unit = joined.rstrip("\n")
                pieces.append((unit if text and worth_translating(unit) else None, joined))
        else:
            for indent, block in _comment_blocks(lines):
                joined = "".join(block)
                unit = "\n".join(_COMMENT.match(line.rstrip("\n"))["text"] for line in block) if indent is not None \
                    else None
                pieces.append((unit if unit and worth_translating(unit) else None, joined))
    return pieces


# A cell's "(N points)", which normgrade.score.notebooks.derive_points writes: a field of its message, so that
# a change of points leaves the translation as it is.
_POINTS = re.compile(r"\((\d+(?:\.\d+)?) points?\)")


def _message(unit):
    """(the message of a unit, the number of points it gives, or None)."""
    found = _POINTS.findall(unit)
    if len(found) != 1:
        return unit, None
    return _POINTS.sub("({points} points)", unit), found[0]


def _translated_piece(cell_type, unit, text, gettext_):
    """One piece of a cell in the language of gettext_: its line breaks and indentation kept."""
    message, points = _message(unit)
    translated = gettext_(message)
    if translated == message:  # not in the catalog: the English as it was
        translated = unit
    elif points is not None:
        translated = translated.replace("{points}", points)
    ending = text[len(text.rstrip("\n")):]
    if cell_type == "markdown":
        return translated + ending
    indent = _COMMENT.match(text.splitlines()[0])["indent"]
    return "\n".join(f"{indent}# {line}".rstrip() for line in translated.split("\n")) + ending


def translate_source(cell_type, source, gettext_):
    """A cell's source with every unit translated (a unit the catalog lacks stays English)."""
    return "".join(text if unit is None else _translated_piece(cell_type, unit, text, gettext_)
                   for unit, text in cell_units(cell_type, source))


def translate_notebook(nb, language):
    """Translate the Markdown and the comments of an nbformat notebook in place."""
    gettext_ = translations(language).gettext
    for cell in nb.cells:
        if cell.cell_type in ("markdown", "code"):
            cell.source = translate_source(cell.cell_type, cell.source, gettext_)
    return nb


def _docstring_nodes(tree):
    return [node for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef)) and ast.get_docstring(node)]


def _docstring_paragraphs(docstring):
    """The paragraphs of a (cleaned) docstring."""
    return re.split(r"\n[ \t]*\n", docstring.strip())


def docstring_units(docstring):
    """The paragraphs of a (cleaned) docstring worth translating, each a unit."""
    return [paragraph for paragraph in _docstring_paragraphs(docstring) if worth_translating(paragraph)]


def _module_comments(source):
    """[(unit or None, text)] of a module's source, as cell_units walks a code cell (the stubs' TODOs left out)."""
    return [(None if unit and unit.startswith("TODO: implement ") else unit, text)
            for unit, text in cell_units("code", source)]


def translate_docstrings(source, language):
    """A Python module's source with its docstrings' paragraphs and its comments translated (the code untouched)."""
    gettext_ = translations(language).gettext
    lines = source.splitlines(keepends=True)
    tree = ast.parse(source)
    for node in sorted(_docstring_nodes(tree), key=lambda n: -n.body[0].lineno if n.body else 0):
        expression = node.body[0]
        docstring = ast.get_docstring(node)
        translated = "\n\n".join(gettext_(p) if worth_translating(p) else p for p in _docstring_paragraphs(docstring))
        if '"""' in translated or "\\" in translated or translated.endswith('"') or \
                not lines[expression.lineno - 1].lstrip().startswith('"""'):
            raise ValueError(f"line {expression.lineno}: a docstring this translation cannot write as a plain \"\"\" "
                             "string (a prefix, a backslash or a quote at its end): keep those out of the stubs' "
                             "docstrings and their translations")
        first = lines[expression.lineno - 1]
        indent = first[:len(first) - len(first.lstrip())]
        if "\n" in translated or lines[expression.lineno - 1].strip() == '"""':
            body = "".join(f"{indent}{line}".rstrip() + "\n" for line in translated.split("\n"))
            new = f'{indent}"""\n{body}{indent}"""\n'
        else:
            new = f'{indent}"""{translated}"""\n'
        lines[expression.lineno - 1:expression.end_lineno] = [new]
    return "".join(text if unit is None else _translated_piece("code", unit, text, gettext_)
                   for unit, text in _module_comments("".join(lines)))


# ---- Babel extractors (babel.cfg names them) --------------------------------------------------------

def extract_notebook(fileobj, keywords, comment_tags, options):
    """
    Babel extractor of a notebook: (line, None, unit, [where]) for each unit
    of each cell (cell_units), and Babel's own Python extraction of each code
    cell (its i18n._("...") calls: the plots' words, which normlab.i18n
    translates as the cell runs). The "line" a catalog gives is the cell's
    number, counted from 1.
    """
    from babel.messages.extract import extract_python

    nb = json.loads(fileobj.read().decode("utf-8"))
    for index, cell in enumerate(nb["cells"]):
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if cell["cell_type"] not in ("markdown", "code"):
            continue
        for unit, _text in cell_units(cell["cell_type"], source):
            if unit is not None:
                kind = "Markdown" if cell["cell_type"] == "markdown" else "comment in code"
                yield index + 1, None, _message(unit)[0], [f"cell {index + 1} ({kind})"]
        if cell["cell_type"] == "code":
            python = "".join("\n" if line.lstrip().startswith(("%", "!")) else line
                             for line in source.splitlines(keepends=True))  # IPython's magics are no Python
            for _line, function, message, _comments in extract_python(io.BytesIO(python.encode("utf-8")), keywords,
                                                                       comment_tags, options):
                yield index + 1, function, message, [f"cell {index + 1} {CODE_CELL}"]


def extract_docstrings(fileobj, keywords, comment_tags, options):
    """Babel extractor of a module's docstrings and comments: (line, None, unit, [whose]) for each unit."""
    source = fileobj.read().decode("utf-8")
    tree = ast.parse(source)
    for node in _docstring_nodes(tree):
        name = getattr(node, "name", "the module")
        for paragraph in docstring_units(ast.get_docstring(node)):
            yield (node.body[0].lineno, None, paragraph, [f"docstring of {name}"])
    line = 1
    for unit, text in _module_comments(source):
        if unit is not None:
            yield line, None, unit, ["comment in the code"]
        line += text.count("\n")


# ---- the staff side's messages: spoken in the course's language ------------------------------------

_SPEAKING = contextvars.ContextVar("normgrade_language", default=SOURCE_LANGUAGE)


@contextlib.contextmanager
def speaking(language):
    """Within the block, _() and ngettext() give the messages in `language` (a course's language)."""
    token = _SPEAKING.set(check_language(language or SOURCE_LANGUAGE))
    try:
        yield
    finally:
        _SPEAKING.reset(token)


def current():
    """The language the messages are given in now (speaking's, else English)."""
    return _SPEAKING.get()


def _(message):
    """`message` in the current language (speaking)."""
    return translations(_SPEAKING.get()).gettext(message)


def ngettext(singular, plural, n):
    """The form of a message for n things, in the current language."""
    return translations(_SPEAKING.get()).ngettext(singular, plural, n)


def N_(message):
    """Mark `message` for the catalogs; it is translated where it is shown, with _(message)."""
    return message


# nbgrader's placeholder where a solution region was, in a release (course.NBGRADER_CONFIG sets the English).
ANSWER_HERE = N_("YOUR ANSWER HERE")
# What every stub raises (normgrade.build.stubs writes it; the scorer and the release proof know it in every
# language by its words, normgrade.score.scorer.stub_templates).
STUB_MESSAGE = N_("{name} is not implemented yet: write it in normlab/layers.py")


def nbgrader_config(language):
    """The lines of a course's nbgrader_config.py that give nbgrader's placeholders in `language` ("" in English)."""
    if language == SOURCE_LANGUAGE:
        return ""
    said = translations(language).gettext(ANSWER_HERE)
    return (f"\n# The course is given in {language} (normgrade release --language): nbgrader's placeholders too.\n"
            f"c.ClearSolutions.code_stub = {{'python': {'# ' + said!r}}}\n"
            f"c.ClearSolutions.text_stub = {said!r}\n")


def course_language(course):
    """The language a built course is given in (its package's COURSE_LANGUAGE; English where it has none)."""
    from normgrade.course import paths

    path = paths(course)["source"] / "normlab" / "locale" / COURSE_LANGUAGE_FILE
    try:
        return check_language(path.read_text(encoding="utf-8").strip())
    except FileNotFoundError:
        return SOURCE_LANGUAGE


# ---- the catalogs' checks (tests/test_language.py; `make catalogs` updates them) -----------------------

def source_messages():
    """{message id: [where]} of every message the English source has now, extracted as babel.cfg says."""
    from babel.messages.extract import extract_from_dir
    from babel.messages.frontend import parse_mapping_cfg

    from normgrade.paths import REPO

    with open(REPO / "babel.cfg", encoding="utf-8") as config:
        method_map, options_map = parse_mapping_cfg(config)
    found = {}
    for filename, lineno, message, _comments, _context in extract_from_dir(REPO, method_map, options_map):
        found.setdefault(message, []).append(f"{filename}:{lineno}")
    return found


_CODE = re.compile(r"`[^`\n]+`")
_MATH = re.compile(r"\$\$.+?\$\$|\$[^$\n]+\$", re.S)
_URL = re.compile(r"https?://[^\s)>\]]+")
_TAG = re.compile(r"</?[A-Za-z][^<>]*>")


def markup(text):
    """What a translation keeps as it is: format fields, code spans, formulas, URLs, HTML tags, Markdown marks."""
    lines = text.split("\n")
    return {
        "format fields": _fields(text),
        "code spans": sorted(_CODE.findall(text)),
        "formulas": sorted(_MATH.findall(text)),
        "URLs": sorted(_URL.findall(text)),
        "HTML tags": sorted(_TAG.findall(text)),
        "heading": re.match(r"#*", text).group(0),
        "bold marks": text.count("**"),
        "list items": sum(bool(re.match(r"\s*(?:[-*] |\d+\. )", line)) for line in lines),
    }


def _fields(text):
    """The replacement fields of a str.format template, each as written ('{name:.1e}'; '{}' for a bare one)."""
    import string

    try:
        return sorted("{" + (name or "") + ("!" + conversion if conversion else "") + (":" + spec if spec else "") + "}"
                      for _literal, name, spec, conversion in string.Formatter().parse(text) if name is not None)
    except ValueError as err:  # a lone brace
        return [f"unparsable: {err}"]


def message_problems(message_id, translated):
    """What is wrong with one translation: [] when it keeps the message's markup and can be formatted as it."""
    if not translated or not "".join(translated if isinstance(translated, (list, tuple)) else [translated]):
        return ["not translated"]
    forms = translated if isinstance(translated, (list, tuple)) else [translated]
    source = message_id[-1] if isinstance(message_id, (list, tuple)) else message_id  # the plural's fields
    wanted, problems = markup(source), []
    for form in forms:
        got = markup(form)
        problems += [f"{what}: {got[what]!r} where the English has {wanted[what]!r}"
                     for what in wanted if got[what] != wanted[what]]
    return problems


def glossary():
    """[{en, zh_CN, vi, enforced, note}] of locale/glossary.csv: each technical term in every language."""
    import csv

    with open(LOCALE / "glossary.csv", encoding="utf-8", newline="") as rows:
        return list(csv.DictReader(rows))


def glossary_problems(message_id, translated, language, terms=None):
    """The enforced glossary terms (`terms`, default glossary()) the English uses (outside code) and the translation
    does not."""
    source = message_id[0] if isinstance(message_id, (list, tuple)) else message_id
    forms = translated if isinstance(translated, (list, tuple)) else [translated]
    prose = _CODE_OR_MATH.sub("", " ".join(source.split())).lower()
    return [f"'{term['en']}' is not '{term[language]}'" for term in (glossary() if terms is None else terms)
            if term["enforced"] == "yes" and re.search(rf"\b{re.escape(term['en'])}\b", prose)
            and not all(term[language].lower() in " ".join(form.split()).lower() for form in forms)]


def catalog_problems(language, messages=None):
    """
    {message: [problem]} of a language's catalog against the English source
    (`messages`, default source_messages()): every message must be there,
    translated, not fuzzy, keeping its markup and the glossary's terms.
    """
    catalog, terms = read_catalog(language), glossary()
    messages = source_messages() if messages is None else messages
    found = {}
    for message_id in messages:
        key = message_id[0] if isinstance(message_id, (list, tuple)) else message_id
        entry = catalog.get(key)
        if entry is None or not entry.string or entry.fuzzy:
            found[key] = ["fuzzy (a guess from an older English)" if entry is not None and entry.fuzzy
                          else "not translated"]
            continue
        problems = message_problems(message_id, entry.string) + glossary_problems(message_id, entry.string, language,
                                                                                  terms)
        if problems:
            found[key] = problems
    return found
