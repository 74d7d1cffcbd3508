#!/usr/bin/env bash
# docs/cli.md matches the program: every subcommand `peft --help` lists has a "## peft NAME" section
# and every section a subcommand; in each section the usage line is the one `peft NAME --help` prints,
# and the flag table holds exactly the flags --help lists, each with the same value placeholder
# ("--r N"), "required" where --help says required, and the default --help prints.
set -u
PEFT=${PEFT_BIN:-build/bin/peft}
DOC=${PEFT_CLI_DOC:-$(dirname "$0")/../../docs/cli.md}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
[ -f "$DOC" ] || { echo "FAIL: $DOC not found"; exit 1; }

"$PEFT" --help > "$work/main.txt" || { echo "FAIL: peft --help"; exit 1; }
for cmd in $(awk '/^commands:/ { on = 1; next } on && /^  [a-z]/ { print $1 }' "$work/main.txt"); do
    "$PEFT" "$cmd" --help > "$work/help-$cmd.txt" || echo "FAIL: peft $cmd --help exits non-zero"
done

python3 - "$DOC" "$work" <<'PY'
import glob, os, re, sys

doc, work = sys.argv[1], sys.argv[2]
failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL: " + msg)


def parse_help(path):
    """usage line, and {flag: (left column, 'required' | default or None)} from --help."""
    lines = open(path).read().splitlines()
    usage = lines[0] if lines and lines[0].startswith("usage: ") else None
    flags, on = {}, False
    for i, line in enumerate(lines):
        if line == "flags:":
            on = True
            continue
        # "  --flag META    help"; a flag too wide for the column has its help on the next line
        m = re.match(r"^  (--\S+(?: \S+)?)(?:\s{2,}(.*))?$", line) if on else None
        if not m:
            continue
        left, text = m.group(1), m.group(2)
        if text is None:
            text = lines[i + 1].strip() if i + 1 < len(lines) else ""
        if text.endswith("(required)"):
            default = "required"
        else:
            d = re.search(r"\(default ([^()]*)\)$", text)
            default = d.group(1) if d else None
        flags[left.split()[0]] = (left, default)
    return usage, flags


def parse_doc(path):
    """{command: (usage line, {flag: (first cell, default cell)})} from the "## peft NAME" sections."""
    sections, name = {}, None
    block = False
    for line in open(path).read().splitlines():
        m = re.match(r"^## peft (\S+)\s*$", line)
        if m:
            name = m.group(1)
            if name in sections:
                fail("docs/cli.md: two sections for peft %s" % name)
            sections[name] = [None, {}]
            continue
        if line.startswith("## "):
            name = None
            continue
        if name is None:
            continue
        if line.startswith("```"):
            block = not block
            continue
        if block and line.startswith("usage: "):
            sections[name][0] = line
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]] if line.startswith("| `--") else None
        if not cells:
            continue
        left = cells[0].strip("`").replace("\\|", "|")
        default = cells[1].replace("\\|", "|") if len(cells) > 1 else ""
        flag = left.split()[0]
        if flag in sections[name][1]:
            fail("docs/cli.md: peft %s: %s documented twice" % (name, flag))
        sections[name][1][flag] = (left, default)
    return sections


commands = sorted(os.path.basename(p)[5:-4] for p in glob.glob(os.path.join(work, "help-*.txt")))
if len(commands) < 5:
    fail("peft --help lists only %d commands: %s" % (len(commands), commands))
sections = parse_doc(doc)
checked = 0
for cmd in commands:
    usage, flags = parse_help(os.path.join(work, "help-%s.txt" % cmd))
    if not flags:
        fail("peft %s --help lists no flags" % cmd)
    if cmd not in sections:
        fail("docs/cli.md: no section '## peft %s'" % cmd)
        continue
    dusage, dflags = sections[cmd]
    if dusage != usage:
        fail("docs/cli.md: peft %s: usage line\n  documented: %s\n  --help:     %s" % (cmd, dusage, usage))
    for flag, (left, default) in flags.items():
        checked += 1
        if flag not in dflags:
            fail("docs/cli.md: peft %s: %s is not documented" % (cmd, left))
            continue
        dleft, ddefault = dflags[flag]
        if dleft != left:
            fail("docs/cli.md: peft %s: documented as '%s', --help says '%s'" % (cmd, dleft, left))
        if default == "required":
            if ddefault != "required":
                fail("docs/cli.md: peft %s: %s is required but documented with '%s'" % (cmd, flag, ddefault))
        elif default is not None:
            if not ddefault.startswith("`%s`" % default):
                fail("docs/cli.md: peft %s: %s defaults to %s, documented '%s'" % (cmd, flag, default, ddefault))
        elif ddefault.startswith("`") or ddefault == "required":
            fail("docs/cli.md: peft %s: %s has no default in --help, documented '%s'" % (cmd, flag, ddefault))
    for flag in dflags:
        if flag not in flags:
            fail("docs/cli.md: peft %s: documents %s, which peft %s --help does not list" % (cmd, flag, cmd))
for name in sections:
    if name not in commands:
        fail("docs/cli.md: section 'peft %s' but peft --help has no such command" % name)
print("cli_docs: %d commands, %d flags compared, %d failure(s)" % (len(commands), checked, len(failures)))
sys.exit(1 if failures else 0)
PY
