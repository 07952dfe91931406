"""
The language normlab's checks speak: the student's own, else the course's, else English.

The messages are GNU gettext catalogs in normlab/locale/<language>/LC_MESSAGES/normlab.mo.
The language is, in this order:

1. NORMLAB_LANGUAGE, where it is set (e.g. NORMLAB_LANGUAGE=vi);
2. the student's locale, as gettext reads it (LANGUAGE, LC_ALL, LC_MESSAGES, LANG),
   where one is set to something other than C or POSIX (e.g. LANG=zh_CN.UTF-8);
3. the course's language, which `normgrade release --language` writes into
   normlab/locale/COURSE_LANGUAGE;
4. English, the source of every message.

A language without a catalog falls back to English.
"""
import functools
import gettext as _gettext
import os
from pathlib import Path

LOCALE_DIR = Path(__file__).with_name("locale")
DOMAIN = "normlab"
_LOCALE_VARIABLES = ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")


def course_language():
    """The course's language (the release's normlab/locale/COURSE_LANGUAGE), or "en"."""
    try:
        return (LOCALE_DIR / "COURSE_LANGUAGE").read_text(encoding="utf-8").strip() or "en"
    except OSError:
        return "en"


def languages(environ=None):
    """The languages to look for, first choice first (see the module's docstring)."""
    environ = os.environ if environ is None else environ
    if environ.get("NORMLAB_LANGUAGE"):
        return [environ["NORMLAB_LANGUAGE"]]
    for variable in _LOCALE_VARIABLES:
        value = environ.get(variable, "")
        chosen = [part for part in value.split(":") if part and part.split(".")[0] not in ("C", "POSIX")]
        if chosen:
            return chosen
        if value:  # C or POSIX: no language chosen; a later variable does not override it
            break
    return [course_language()]


@functools.lru_cache(maxsize=None)
def _translations(chosen):
    return _gettext.translation(DOMAIN, LOCALE_DIR, languages=list(chosen), fallback=True)


def translations():
    """The gettext translations of the language chosen now (English where there is no catalog)."""
    return _translations(tuple(languages()))


def _(message):
    """`message` in the chosen language."""
    return translations().gettext(message)


def ngettext(singular, plural, n):
    """The form of a message for n things, in the chosen language."""
    return translations().ngettext(singular, plural, n)


def N_(message):
    """Mark `message` for the catalogs; it is translated where it is shown, with _(message)."""
    return message


# Fonts with the Chinese characters a plot's words may need, tried in this order after matplotlib's own
# (which lack them): matplotlib falls back from one family to the next, glyph by glyph.
PLOT_FONTS = ("Noto Sans CJK SC", "Source Han Sans SC", "Microsoft YaHei", "PingFang SC", "Heiti SC",
              "WenQuanYi Zen Hei", "WenQuanYi Micro Hei", "SimHei")


def plot_fonts(families):
    """`families` (matplotlib's rcParams["font.family"]) followed by the fonts of PLOT_FONTS installed here."""
    from matplotlib import font_manager

    installed = {font.name for font in font_manager.fontManager.ttflist}
    families = [families] if isinstance(families, str) else list(families)
    return [*families, *(font for font in PLOT_FONTS if font in installed and font not in families)]
