"""Messages in the command line's words: the Python keywords a hint names become flags.

The library's errors and warnings name their fix as Python (``frame_axis=-1``,
``resume=True``, ``pass detect_bad_frames=True``, ``daskreg.open_stack(source,
frame_axis=-1)``), which is right for a script. The command line shows the same hint with
the flags of the subcommand that ran (``--frame-axis -1``, ``--resume``, ``leave out
--keep-bad-frames``), read from its parser: each flag's ``dest`` is the keyword it sets, so
the translation has no list of its own to fall out of date. A keyword the subcommand has no
flag for is left as it is.
"""

from __future__ import annotations

import argparse
import re

__all__ = ["cli_words"]

# A keyword argument as messages write it, with the verb before it if any: the verb changes
# when the fix is to leave a flag out ("pass band=None" -> "leave out --band").
_VALUE = (
    r"'[^']*'|\"[^\"]*\"|\[[^\]]*\]|\([^()]*\)|<[^<>]*>|\.\.\."
    r"|[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|\w+"
)
_KEYWORD = re.compile(
    rf"(?:\b(?P<verb>pass|leave|use|set) )?(?<![\w.])(?P<name>[a-z]\w*)=(?P<value>{_VALUE})"
)
# A Python call that only carries keywords with flags: "open it with daskreg.open_stack(
# source, frame_axis=-1)" is "pass --frame-axis -1" on the command line.
_CALL = re.compile(r"(?:\bopen (?:\w+ ){1,4}?with )?\bdaskreg\.\w+\(\w+, (?P<keywords>[^()]*)\)")
# A flag spelled twice, as in "resume=True (daskreg register --resume)".
_REPEATED = re.compile(r"(?P<flag>--[\w-]+) \(daskreg \w+ (?P=flag)\)")
# What "leave out" reads as without a verb.
_OUT = "leave out "


def cli_words(message: str, parser: argparse.ArgumentParser) -> str:
    """Rewrite the Python keywords of a message as the flags of ``parser``.

    Parameters
    ----------
    message : str
        An error or warning message of the library.
    parser : argparse.ArgumentParser
        The parser of the subcommand that ran; its options' ``dest`` are the keywords of the
        Python API they set.

    Returns
    -------
    str
        The message with each ``keyword=value`` the subcommand has a flag for written as
        that flag, and each underscored keyword named alone (``window_radius``) as its flag.

    Examples
    --------
    >>> from daskreg.cli.parser import build_parser
    >>> args = build_parser().parse_args(["register", "in.tif", "-o", "a.tif"])
    >>> cli_words("pass frame_axis=-1", args.command_parser)
    'pass --frame-axis -1'
    >>> cli_words("pass detect_bad_frames=True to exclude them", args.command_parser)
    'leave out --keep-bad-frames to exclude them'
    """
    # Option actions are only listed by the private ``_actions``; its layout has not changed
    # since argparse was written, and a missing flag only leaves the Python spelling.
    flags = {a.dest: a for a in getattr(parser, "_actions", ()) if a.option_strings}

    def keyword(match: re.Match[str]) -> str:
        action = flags.get(match["name"])
        if action is None:
            return match[0]
        words = _flag_words(action, match["value"])
        verb = match["verb"]
        if words.startswith(_OUT):
            return words if verb else "no " + words[len(_OUT) :]
        return f"{verb} {words}" if verb else words

    def call(match: re.Match[str]) -> str:
        names = re.findall(r"(\w+)=", match["keywords"])
        if not names or any(name not in flags for name in names):
            return match[0]
        return "pass " + _KEYWORD.sub(keyword, match["keywords"]).replace(", ", " ")

    text = _CALL.sub(call, message)
    text = _KEYWORD.sub(keyword, text)
    for dest, action in flags.items():
        if "_" in dest and action.nargs != 0:
            text = re.sub(rf"(?<![\w.-]){dest}(?![\w=(])", _long(action), text)
    return _REPEATED.sub(r"\g<flag>", text)


def _flag_words(action: argparse.Action, value: str) -> str:
    """The flag that gives ``action.dest`` this value (as Python writes it), or leaves it."""
    if action.nargs == 0:
        # Switches: --resume (True), --no-crop and --keep-bad-frames (False), --[no-]progress.
        if isinstance(action, argparse.BooleanOptionalAction):
            return action.option_strings[0 if value == "True" else 1]
        return _long(action) if value == repr(action.const) else _OUT + _long(action)
    if value == "None":
        return _OUT + _long(action)
    return f"{_long(action)} {_flag_value(action, value)}"


def _flag_value(action: argparse.Action, value: str) -> str:
    if value == "..." or value.strip("[]()") == "...":
        return str(action.metavar or action.dest.upper())
    if value[0] in "'\"":
        return value[1:-1] if value[1:-1] and " " not in value else value
    if value[0] in "[(":
        items = [item.strip(" '\"") for item in value[1:-1].split(",") if item.strip()]
        # --frames takes START:STOP; lists of frames are comma-separated.
        return (":" if action.metavar == "START:STOP" else ",").join(items)
    return value


def _long(action: argparse.Action) -> str:
    return next((s for s in action.option_strings if s.startswith("--")), action.option_strings[0])
