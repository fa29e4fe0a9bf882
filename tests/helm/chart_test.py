#!/usr/bin/env python3
"""Checks the Helm chart in helm/herald against the herald binary and topics/topics.json.

Usage: python3 tests/helm/chart_test.py /path/to/build/herald

Python 3 standard library only (no PyYAML): values.yaml is read with a small parser for the
block-style YAML subset the chart's values file is written in (see the note at its top).

Checks:
  1. helm/herald/files/topics.json is byte-identical to topics/topics.json.
  2. Every stage subcommand of the binary (`herald --help`, deliver expanded per channel of the
     notify.deliver.<channel>.<priority> topics) is a stage of the chart with matching args, and
     the chart has no stage the binary lacks; `migrate` is the hook Job.
  3. Every consumer stage's topics exist in topics.json, its group is herald-<stage>, its topics
     match the consumer's README and the delivery topics of its channel; every topic is consumed
     by a stage or listed in producedOnlyTopics.
  4. Every HERALD_* variable the chart sets (config, stage env, secrets, templates) is a setting
     `herald config` documents (HERALD_KAFKA_* raw settings allowed, <NAME>_FILE only for
     secrets, HERALD_KAFKA_<OPTION>_FILE when `herald config` marks HERALD_KAFKA_<OPTION> as
     readable from a file), no setting is both in config and in secrets, and the binary accepts
     the chart's environment and flags (`herald config` run with them exits 0); for values.yaml
     and every helm/herald/ci/*.yaml on top of it.
  5. Every key in values.yaml and helm/herald/ci/*.yaml has a comment.
  6. Every metric the Grafana dashboard queries is registered in the C++ sources, or is one of
     the names issue 8 will add.
  7. Templates: balanced {{ }} and if/range/with/define ... end blocks, every included template
     is defined; the chart's JSON files parse.
"""

import json
import os
import re
import subprocess
import sys
import tempfile

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
CHART = os.path.join(REPO, "helm", "herald")

# Subcommands of the binary that are not long-running stages, and why the chart leaves them out.
NOT_DEPLOYED = {
    "config": "prints the settings",
    "apikey": "operator tool (creates admin API keys)",
    "publish": "client tool",
    "replay": "analyst tool (time-range export, sandbox re-publish, dry run)",
    "topics": "operator tool; the chart renders topics as Strimzi KafkaTopics",
    "templates": "operator tool",
    "demo": "development stack demo",
    "dev": "local development stack",
    "migrate": "runs as the pre-install/pre-upgrade hook Job (checked separately)",
}

# Metric names the dashboard may use before the C++ side registers them.
PENDING_METRICS = {
    "herald_consumer_lag": "issue 8: consumer lag per topic/partition/group",
    "herald_processing_seconds": "issue 8: per-record processing latency histogram",
}

# Sample values for variables whose value the templates compute (for the `herald config` run).
SAMPLE_VALUES = {
    "HERALD_GROUP_INSTANCE_ID": "herald-deliver-email-0",
    "HERALD_SCHEMA_DIR": "/etc/herald/schemas",
    "HERALD_PG_URL": "postgresql://herald:pw@db:5432/herald",
    "HERALD_REDIS_URL": "redis://:pw@redis:6379/0",
    "HERALD_ADMIN_TOKEN": "write:w,read:r",
}
SAMPLE_FLAGS = {"--smtp-ca-file": "/etc/herald/tls/smtp/ca.crt"}


# --------------------------------------------------------------------------------------------
# A small YAML reader for the block-style subset of values.yaml.


class YamlError(Exception):
    pass


def _strip_comment(line):
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "\"'":
            # A quote only opens a string at the start of a scalar.
            if i == 0 or line[i - 1] in " [{,:-":
                quote = ch
        elif ch == "#" and (i == 0 or line[i - 1] in " \t"):
            return line[:i]
    return line


def _split_key(text, no):
    """'key: rest' -> (key, rest); None when the text is not a mapping entry."""
    if text[0] in "\"'":
        end = text.find(text[0], 1)
        if end < 0:
            raise YamlError(f"line {no}: unterminated quoted key")
        key, after = text[1:end], text[end + 1:]
        if not after.startswith(":"):
            return None
        return key, after[1:].strip()
    if text[0] in "[{":
        return None
    m = re.match(r"^([^\s:][^:]*?)\s*:(\s+(.*))?$", text)
    if not m:
        return None
    return m.group(1), (m.group(3) or "").strip()


def _scalar(text, no):
    if text.startswith('"'):
        if not text.endswith('"') or len(text) < 2:
            raise YamlError(f"line {no}: bad double-quoted string {text!r}")
        return json.loads(text)
    if text.startswith("'"):
        if not text.endswith("'") or len(text) < 2:
            raise YamlError(f"line {no}: bad single-quoted string {text!r}")
        return text[1:-1].replace("''", "'")
    if text in ("|", ">", "|-", ">-", "|+", ">+"):
        raise YamlError(f"line {no}: multi-line strings are not supported by this reader")
    if text.startswith(("&", "*", "!")):
        raise YamlError(f"line {no}: anchors, aliases and tags are not supported by this reader")
    low = text.lower()
    if low in ("null", "~"):
        return None
    if low == "true":
        return True
    if low == "false":
        return False
    if low in ("yes", "no", "on", "off", "y", "n"):
        raise YamlError(f"line {no}: {text!r} is a boolean in YAML 1.1 (Helm) but a string in 1.2: quote it")
    if re.fullmatch(r"[-+]?[0-9]+", text):
        return int(text)
    if re.fullmatch(r"[-+]?([0-9]*\.[0-9]+|[0-9]+\.[0-9]*)([eE][-+]?[0-9]+)?", text):
        return float(text)
    return text


class _Flow:
    def __init__(self, text, no):
        self.s, self.i, self.no = text, 0, no

    def ws(self):
        while self.i < len(self.s) and self.s[self.i] == " ":
            self.i += 1

    def value(self):
        self.ws()
        ch = self.s[self.i] if self.i < len(self.s) else ""
        if ch == "[":
            self.i += 1
            out = []
            self.ws()
            if self.s[self.i:self.i + 1] == "]":
                self.i += 1
                return out
            while True:
                out.append(self.value())
                self.ws()
                ch = self.s[self.i:self.i + 1]
                self.i += 1
                if ch == "]":
                    return out
                if ch != ",":
                    raise YamlError(f"line {self.no}: bad flow sequence {self.s!r}")
        if ch == "{":
            self.i += 1
            out = {}
            self.ws()
            if self.s[self.i:self.i + 1] == "}":
                self.i += 1
                return out
            while True:
                key = self.atom(stop=":")
                self.ws()
                if self.s[self.i:self.i + 1] != ":":
                    raise YamlError(f"line {self.no}: bad flow mapping {self.s!r}")
                self.i += 1
                out[str(key)] = self.value()
                self.ws()
                ch = self.s[self.i:self.i + 1]
                self.i += 1
                if ch == "}":
                    return out
                if ch != ",":
                    raise YamlError(f"line {self.no}: bad flow mapping {self.s!r}")
        return self.atom()

    def atom(self, stop=""):
        self.ws()
        if self.s[self.i:self.i + 1] in ("\"", "'"):
            q = self.s[self.i]
            j = self.i + 1
            while j < len(self.s):
                if self.s[j] == q:
                    if q == "'" and self.s[j + 1:j + 2] == "'":
                        j += 2
                        continue
                    if q == '"' and self.s[j - 1] == "\\":
                        j += 1
                        continue
                    break
                j += 1
            text = self.s[self.i:j + 1]
            self.i = j + 1
            return _scalar(text, self.no)
        j = self.i
        while j < len(self.s) and self.s[j] not in ",]}" + stop:
            j += 1
        text = self.s[self.i:j].strip()
        self.i = j
        return _scalar(text, self.no)


def _value(text, no):
    if text.startswith(("[", "{")):
        f = _Flow(text, no)
        v = f.value()
        f.ws()
        if f.i != len(text):
            raise YamlError(f"line {no}: trailing text after flow value {text!r}")
        return v
    return _scalar(text, no)


def parse_yaml(text):
    lines = []
    for no, raw in enumerate(text.splitlines(), 1):
        if "\t" in raw[: len(raw) - len(raw.lstrip())]:
            raise YamlError(f"line {no}: tab in indentation")
        body = _strip_comment(raw).rstrip()
        if not body.strip() or body.strip() == "---":
            continue
        lines.append((no, len(body) - len(body.lstrip(" ")), body.strip()))
    if not lines:
        return None
    value, i = _block(lines, 0, lines[0][1])
    if i != len(lines):
        raise YamlError(f"line {lines[i][0]}: unexpected indentation")
    return value


def _is_item(text):
    return text == "-" or text.startswith("- ")


def _block(lines, i, indent):
    if _is_item(lines[i][2]):
        return _seq(lines, i, indent)
    return _map(lines, i, indent)


def _map(lines, i, indent):
    out = {}
    while i < len(lines) and lines[i][1] == indent and not _is_item(lines[i][2]):
        no, _, text = lines[i]
        kv = _split_key(text, no)
        if kv is None:
            raise YamlError(f"line {no}: expected 'key: value', got {text!r}")
        key, rest = kv
        if key in out:
            raise YamlError(f"line {no}: duplicate key {key!r}")
        i += 1
        if rest:
            out[key] = _value(rest, no)
        elif i < len(lines) and (lines[i][1] > indent or (lines[i][1] == indent and _is_item(lines[i][2]))):
            out[key], i = _block(lines, i, lines[i][1])
        else:
            out[key] = None
    if i < len(lines) and lines[i][1] > indent:
        raise YamlError(f"line {lines[i][0]}: unexpected indentation")
    return out, i


def _seq(lines, i, indent):
    out = []
    while i < len(lines) and lines[i][1] == indent and _is_item(lines[i][2]):
        no, _, text = lines[i]
        item = text[1:].strip()
        if not item:
            i += 1
            if i < len(lines) and lines[i][1] > indent:
                v, i = _block(lines, i, lines[i][1])
                out.append(v)
            else:
                out.append(None)
        elif _split_key(item, no) is not None:
            # "- key: value" opens a mapping whose keys sit two columns in.
            sub = indent + (len(text) - len(item))
            lines = lines[:i] + [(no, sub, item)] + lines[i + 1:]
            v, i = _map(lines, i, sub)
            out.append(v)
        else:
            out.append(_value(item, no))
            i += 1
    return out, i


# --------------------------------------------------------------------------------------------


class Report:
    def __init__(self):
        self.failures = []
        self.section = ""

    def start(self, title):
        self.section = title
        print(f"\n== {title}")

    def ok(self, msg):
        print(f"  ok    {msg}")

    def note(self, msg):
        print(f"  note  {msg}")

    def fail(self, msg):
        print(f"  FAIL  {msg}")
        self.failures.append(f"[{self.section}] {msg}")

    def expect(self, cond, ok_msg, fail_msg):
        if cond:
            self.ok(ok_msg)
        else:
            self.fail(fail_msg)
        return cond


def merge(base, over):
    """The chart's herald.merge: maps merge key by key, null keeps the default, else replace."""
    out = dict(base or {})
    for k, v in (over or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        elif v is not None:
            out[k] = v
    return out


def run(binary, args, env=None):
    return subprocess.run([binary] + args, capture_output=True, text=True, timeout=60,
                          env=env if env is not None else dict(os.environ))


def help_subcommands(text):
    """Subcommands and descriptions from CLI11's help output."""
    subs = {}
    lines = text.splitlines()
    try:
        start = next(i for i, l in enumerate(lines) if l.strip() == "Subcommands:")
    except StopIteration:
        return subs
    pending = None
    for line in lines[start + 1:]:
        if not line.strip():
            if subs or pending:
                break
            continue
        if not line.startswith(" "):
            break
        m = re.match(r"^  (\S+)(\s{2,}(.*))?$", line)
        if m:
            if m.group(3) is None:
                pending = m.group(1)
                subs[pending] = ""
            else:
                subs[m.group(1)] = m.group(3).strip()
                pending = None
        elif pending:
            subs[pending] = line.strip()
            pending = None
    return subs


def config_settings(text):
    """{env: {"secret": bool}} from `herald config`'s table."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"^\|\s*`(HERALD_[A-Z0-9_<>]+)`\s*\|", line)
        if m:
            out[m.group(1)] = {"secret": "(secret: also `" in line}
    return out


def readme_topics(path, channel, topic_names):
    """Topics named on the README's '**in:**' line, expanded for <channel> and a|b|c; None when the
    line is missing or names no topic."""
    try:
        text = open(path, encoding="utf-8").read()
    except OSError:
        return None, None
    found, group = None, None
    for line in text.splitlines():
        if "**in:**" in line:
            names = set()
            for tok in re.findall(r"`([^`]+)`", line):
                tok = tok.replace("<channel>", channel or "<channel>")
                m = re.match(r"^(.*\.)([a-z0-9]+(\|[a-z0-9]+)+)$", tok)
                alts = [m.group(1) + a for a in m.group(2).split("|")] if m else [tok]
                names.update(a for a in alts if a in topic_names)
            found = names or None
        if "**group:**" in line:
            m = re.search(r"`([^`]+)`", line)
            if m:
                group = m.group(1).replace("<channel>", channel or "<channel>")
    return found, group


def check_environment(rep, binary, label, values, documented, template_vars, flag_literals):
    """Section 4 for one set of values: variable names, then `herald config` with them."""
    defaults = values.get("stageDefaults") or {}
    stages = {name: merge(defaults, raw) for name, raw in (values.get("stages") or {}).items()}
    sources = []  # (variable, where, value or None)
    for k, v in (values.get("config") or {}).items():
        sources.append((k, "config", v))
    for name, s in stages.items():
        for k, v in (s.get("env") or {}).items():
            sources.append((k, f"stages.{name}.env", v))
    secret_files = []
    # HERALD_KAFKA_<OPTION>_FILE: the binary reads any raw Kafka setting from a file when its
    # table marks the HERALD_KAFKA_<OPTION> row as a secret.
    kafka_files = documented.get("HERALD_KAFKA_<OPTION>", {}).get("secret", False)
    config_vars = {k for k, v in (values.get("config") or {}).items() if v is not None and str(v) != ""}
    for k, e in (values.get("secrets") or {}).items():
        if not isinstance(e, dict) or not e.get("secretName"):
            continue
        if k in config_vars:
            rep.fail(f"{label}: {k} is both in config and in secrets; the binary refuses NAME with NAME_FILE")
        if e.get("asFile"):
            file_ok = kafka_files if k.startswith("HERALD_KAFKA_") else documented.get(k, {}).get("secret")
            if not file_ok:
                rep.fail(f"{label}: secrets.{k}.asFile: `herald config` offers no {k}_FILE (only settings marked secret)")
            if e.get("optional"):
                rep.fail(f"{label}: secrets.{k}: asFile and optional cannot be combined")
            sources.append((k + "_FILE", "secrets (asFile)", None))
            secret_files.append(k)
        else:
            sources.append((k, "secrets", None))
        for st in e.get("stages") or []:
            if st not in stages and st != "migrate":
                rep.fail(f"{label}: secrets.{k}.stages names {st}, which is not a stage")
    for v in sorted(template_vars):
        sources.append((v, "templates", None))

    def valid(var):
        if var.startswith("HERALD_KAFKA_"):
            return not var.endswith("_FILE") or kafka_files
        if var in documented and "<" not in var:
            return True
        return var.endswith("_FILE") and documented.get(var[:-5], {}).get("secret", False)

    bad = sorted({(v, w) for v, w, _ in sources if not valid(v)})
    for v, w in bad:
        rep.fail(f"{label}: {v} ({w}) is not a setting of the binary (see `herald config`)")
    names = sorted({v for v, _, _ in sources})
    if not bad:
        rep.ok(f"{label}: {len(names)} variables are documented settings: {', '.join(names)}")

    # Run the binary with this environment and the templates' global flags: it must accept them.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    with tempfile.TemporaryDirectory() as tmp:
        for var, where, value in sources:
            if where == "config" and (value is None or str(value) == ""):
                continue  # the chart skips empty config values
            if where == "templates" and var in secret_files:
                # The templates only mention it (a message, a check); the chart sets <NAME>_FILE,
                # and the binary refuses NAME together with NAME_FILE.
                continue
            if var.endswith("_FILE") and var[:-5] in secret_files:
                path = os.path.join(tmp, var)
                with open(path, "w") as f:
                    f.write(SAMPLE_VALUES.get(var[:-5], "sample-secret") + "\n")
                env[var] = path
            elif value is not None and str(value) != "":
                env[var] = str(value).lower() if isinstance(value, bool) else str(value)
            elif var in SAMPLE_VALUES:
                env[var] = SAMPLE_VALUES[var]
            elif var.startswith("HERALD_KAFKA_"):
                env[var] = "1"
            elif var == "HERALD_HTTP_PORT":
                env[var] = str(values.get("httpPort", 8080))
            elif var == "HERALD_DRAIN_TIMEOUT":
                env[var] = f"{values.get('drainTimeoutSeconds', 8)}s"
            elif var in documented:
                env[var] = "sample"
        flags = []
        for flag in sorted(flag_literals):
            flags += [flag, SAMPLE_FLAGS.get(flag, "sample")]
        r = run(binary, flags + ["config"], env=env)
    rep.expect(r.returncode == 0,
               f"{label}: `herald {' '.join(flags)} config` accepts the environment ({len(env) - 1} variables)",
               f"{label}: the binary rejects the environment/flags (exit {r.returncode}): {r.stderr.strip()[:400]}")


def coalesce(base, over):
    """Helm's merge of a user values file over the chart's: maps merge, null deletes."""
    out = dict(base)
    for k, v in (over or {}).items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = coalesce(out[k], v)
        else:
            out[k] = v
    return out


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        print("usage: python3 tests/helm/chart_test.py /path/to/herald", file=sys.stderr)
        return 2
    binary = os.path.abspath(sys.argv[1])
    rep = Report()
    print(f"chart:  {CHART}\nbinary: {binary}")
    if not os.access(binary, os.X_OK):
        print(f"FAIL: {binary} is not an executable herald binary", file=sys.stderr)
        return 1

    # Inputs.
    values_path = os.path.join(CHART, "values.yaml")
    values_text = open(values_path, encoding="utf-8").read()
    try:
        values = parse_yaml(values_text)
    except YamlError as e:
        print(f"FAIL: values.yaml: {e}", file=sys.stderr)
        return 1
    value_sets = [("values.yaml", values, values_text)]
    ci_dir = os.path.join(CHART, "ci")
    for fn in sorted(os.listdir(ci_dir)) if os.path.isdir(ci_dir) else []:
        if fn.endswith((".yaml", ".yml")):
            text = open(os.path.join(ci_dir, fn), encoding="utf-8").read()
            try:
                value_sets.append((f"ci/{fn}", coalesce(values, parse_yaml(text) or {}), text))
            except YamlError as e:
                print(f"FAIL: ci/{fn}: {e}", file=sys.stderr)
                return 1
    catalog = json.load(open(os.path.join(REPO, "topics", "topics.json"), encoding="utf-8"))
    topics = {t["name"]: t for t in catalog["topics"]}
    defaults = values.get("stageDefaults") or {}
    stages = {name: merge(defaults, raw) for name, raw in (values.get("stages") or {}).items()}

    # 1. topics.json copy.
    rep.start("1. helm/herald/files/topics.json is an exact copy of topics/topics.json")
    src = open(os.path.join(REPO, "topics", "topics.json"), "rb").read()
    try:
        copy = open(os.path.join(CHART, "files", "topics.json"), "rb").read()
    except OSError:
        copy = None
    rep.expect(copy == src, f"byte-identical ({len(src)} bytes, {len(topics)} topics)",
               "helm/herald/files/topics.json differs from topics/topics.json: "
               "cp topics/topics.json helm/herald/files/topics.json")

    # 2. Stages of the binary vs the chart.
    rep.start("2. every stage of the binary is deployed by the chart")
    h = run(binary, ["--help"])
    subs = help_subcommands(h.stdout)
    if not subs:
        rep.fail(f"could not read the subcommands from `herald --help` (exit {h.returncode})")
    else:
        rep.ok(f"`herald --help` lists {len(subs)} subcommands: {', '.join(subs)}")
    channels = sorted({t["channel"] for t in catalog["topics"] if t.get("family") == "deliver"})
    dh = run(binary, ["deliver", "--help"]).stdout
    m = re.search(r"--channel\s+\S*\s+([a-z]+(\s*\|\s*[a-z]+)+)", dh)
    if m:
        cli_channels = sorted(c.strip() for c in m.group(1).split("|"))
        rep.expect(cli_channels == channels, f"deliver channels agree: binary {cli_channels} = topics {channels}",
                   f"`herald deliver --channel` offers {cli_channels} but topics.json has delivery topics for {channels}")
    else:
        rep.note("could not read the --channel choices from `herald deliver --help`; using the topics' channels")
    expected = {}
    for sub, desc in subs.items():
        if sub in NOT_DEPLOYED:
            if re.search(r"\bstage\b", desc, re.I):
                rep.fail(f"`{sub}` is described as a stage ({desc!r}) but the test lists it as not deployed")
            continue
        if sub == "deliver":
            for c in channels:
                expected[f"deliver-{c}"] = ["deliver", "--channel", c]
        else:
            expected[sub] = [sub]
    rep.ok("not deployed: " + ", ".join(f"{k} ({v})" for k, v in NOT_DEPLOYED.items() if k in subs))
    by_args = {}
    for name, s in stages.items():
        args = [str(a) for a in (s.get("args") or [])]
        by_args[tuple(args)] = name
        if not s.get("enabled", True):
            rep.fail(f"stages.{name} is disabled by default; production defaults deploy every stage")
    for name, args in sorted(expected.items()):
        got = by_args.get(tuple(args))
        if got == name:
            rep.ok(f"stage {name}: herald {' '.join(args)}")
        elif got:
            rep.fail(f"herald {' '.join(args)} is deployed as stages.{got}; name it {name} (its group is herald-{name})")
        else:
            rep.fail(f"the binary's stage `herald {' '.join(args)}` is missing from values.yaml stages ({name})")
    for name, s in sorted(stages.items()):
        if name not in expected:
            rep.fail(f"stages.{name} (herald {' '.join(map(str, s.get('args') or []))}) is not a stage of the binary")
        args = [str(a) for a in (s.get("args") or [])]
        if args and args[0] in subs:
            sub_help = run(binary, [args[0], "--help"]).stdout
            for flag in [a for a in args[1:] if a.startswith("--")]:
                if not re.search(r"(^|[\s,])" + re.escape(flag) + r"\b", sub_help):
                    rep.fail(f"stages.{name}.args: `herald {args[0]}` has no option {flag}")
    mig = values.get("migrate") or {}
    rep.expect("migrate" in subs and [str(a) for a in mig.get("args") or []] == ["migrate"],
               "migrate hook Job runs `herald migrate`",
               f"migrate.args should be [migrate] and the binary should have `migrate` (args {mig.get('args')})")

    # 3. Topics.
    rep.start("3. consumer stages and topics")
    produced_only = values.get("producedOnlyTopics") or []
    consumed = {}
    for name, s in sorted(stages.items()):
        k = s.get("kafka") or {}
        ts = k.get("topics") or []
        if not ts:
            if k.get("group"):
                rep.fail(f"stages.{name} has a group but no topics")
            continue
        missing = [t for t in ts if t not in topics]
        if missing:
            rep.fail(f"stages.{name}.kafka.topics not in topics.json: {missing}")
        for t in ts:
            consumed.setdefault(t, []).append(name)
        if k.get("group") != f"herald-{name}":
            rep.fail(f"stages.{name}.kafka.group is {k.get('group')!r}; the binary's group is herald-{name}")
        channel = name[len("deliver-"):] if name.startswith("deliver-") else None
        if channel:
            want = {t for t, d in topics.items() if d.get("family") == "deliver" and d.get("channel") == channel}
            if set(ts) != want:
                rep.fail(f"stages.{name} consumes {sorted(ts)}; the {channel} delivery topics are {sorted(want)}")
        base = "deliver" if channel else name
        readme = os.path.join(REPO, "consumers", base, "README.md")
        rt, rg = readme_topics(readme, channel, topics)
        if rt is None:
            rep.note(f"{os.path.relpath(readme, REPO)}: no topics on an '**in:**' line; README cross-check skipped")
        elif set(ts) != rt:
            rep.fail(f"stages.{name} consumes {sorted(ts)} but {os.path.relpath(readme, REPO)} says {sorted(rt)}")
        if rg and rg != f"herald-{name}":
            rep.fail(f"{os.path.relpath(readme, REPO)} names the group {rg}, the chart herald-{name}")
        partitions = sum(topics[t]["partitions"] for t in ts if t in topics)
        rep.ok(f"{name}: group herald-{name}, {len(ts)} topic(s), {partitions} partitions")
    for t in produced_only:
        if t not in topics:
            rep.fail(f"producedOnlyTopics: {t} is not in topics.json")
        if t in consumed:
            rep.fail(f"producedOnlyTopics: {t} is consumed by {consumed[t]}")
    uncovered = [t for t in topics if t not in consumed and t not in produced_only]
    rep.expect(not uncovered,
               f"all {len(topics)} topics are consumed by a stage or produced-only ({', '.join(produced_only)})",
               f"topics consumed by no stage and not in producedOnlyTopics: {uncovered}")

    # 4. HERALD_* variables.
    rep.start("4. every HERALD_* variable the chart sets is a documented setting the binary accepts")
    c = run(binary, ["config"], env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    documented = config_settings(c.stdout)
    if c.returncode != 0 or not documented:
        rep.fail(f"`herald config` failed (exit {c.returncode}): {c.stderr.strip()[:300]}")
    else:
        rep.ok(f"`herald config` documents {len(documented)} settings")
    template_vars = set()
    flag_literals = set()
    tdir = os.path.join(CHART, "templates")
    for fn in sorted(os.listdir(tdir)):
        text = open(os.path.join(tdir, fn), encoding="utf-8").read()
        template_vars.update(re.findall(r"\bHERALD_[A-Z0-9_]*[A-Z0-9]\b", text))
        flag_literals.update(re.findall(r'"(--[a-z][a-z-]+)"', text))
    for flag in sorted(flag_literals):
        if not re.search(r"(^|\s)" + re.escape(flag) + r"\b", h.stdout):
            rep.fail(f"the templates pass {flag}, which `herald --help` does not list")
    for label, vals, _ in value_sets:
        check_environment(rep, binary, label, vals, documented, template_vars, flag_literals)

    # 5. values documentation.
    rep.start("5. every key in the values files has a comment")
    for label, _, text in value_sets:
        undocumented = []
        prev_comment = False
        keys = 0
        list_indent = None  # keys inside block-list items are data, not settings
        for no, raw in enumerate(text.splitlines(), 1):
            s = raw.strip()
            if not s:
                prev_comment = False
                continue
            if s.startswith("#"):
                prev_comment = True
                continue
            indent = len(raw) - len(raw.lstrip(" "))
            if list_indent is not None and indent < list_indent:
                list_indent = None
            if s.startswith("- "):
                list_indent = indent
            if list_indent is not None:
                prev_comment = False
                continue
            if _split_key(s, no) is not None:
                keys += 1
                if not prev_comment and _strip_comment(raw) == raw:
                    undocumented.append(f"line {no}: {s}")
            prev_comment = False
        rep.expect(not undocumented, f"{label}: {keys} keys, all commented",
                   f"{label}: keys without a comment: " + "; ".join(undocumented))

    # 6. Dashboard metrics.
    rep.start("6. the Grafana dashboard queries metrics the binary registers")
    dash_path = os.path.join(CHART, "files", "dashboards", "herald.json")
    registered = set()
    for d in ("pipeline", "consumers", "producers"):
        for root, _, files in os.walk(os.path.join(REPO, d)):
            for fn in files:
                if fn.endswith((".cpp", ".hpp", ".h", ".cc")) and "_test" not in fn:
                    text = open(os.path.join(root, fn), encoding="utf-8", errors="replace").read()
                    registered.update(re.findall(r'Get(?:Counter|Gauge|Histogram)\(\s*"(herald_[a-z0-9_]+)"', text))
    try:
        dash = json.load(open(dash_path, encoding="utf-8"))
        exprs = []

        def walk(o):
            if isinstance(o, dict):
                for k, v in o.items():
                    if k in ("expr", "query", "definition") and isinstance(v, str):
                        exprs.append(v)
                    else:
                        walk(v)
            elif isinstance(o, list):
                for v in o:
                    walk(v)
        walk(dash)
        used = set()
        for e in exprs:
            for name in re.findall(r"\bherald_[a-z0-9_]+", e):
                used.add(re.sub(r"_(bucket|sum|count)$", "", name))
        if not registered:
            rep.note("no C++ sources found; metric names not checked")
        unknown = sorted(n for n in used if n not in registered and n not in PENDING_METRICS)
        rep.expect(not unknown, f"{len(used)} metric names, all registered or pending",
                   f"dashboard metrics the sources do not register: {unknown}")
        for n, why in sorted(PENDING_METRICS.items()):
            if n in used:
                rep.note(f"{n} is {'now registered' if n in registered else 'not registered yet'} ({why})")
        panels = [p for p in dash.get("panels", []) if p.get("type") != "row"]
        rep.ok(f"dashboard {dash.get('uid')!r}: {len(panels)} panels")
    except (OSError, ValueError) as e:
        rep.fail(f"{dash_path}: {e}")

    # 7. Template syntax.
    rep.start("7. template syntax and chart files")
    defined, included = set(), set()
    open_kw = ("if", "range", "with", "define", "block")
    for fn in sorted(os.listdir(tdir)):
        path = os.path.join(tdir, fn)
        text = open(path, encoding="utf-8").read()
        problems = []
        if text.count("{{") != text.count("}}"):
            problems.append(f"{text.count('{{')} '{{{{' vs {text.count('}}')} '}}}}'")
        stack = []
        pos = 0
        for m in re.finditer(r"\{\{(.*?)\}\}", text, re.S):
            if "{{" in text[pos:m.start()] or "}}" in text[pos:m.start()]:
                problems.append("a stray {{ or }}")
            pos = m.end()
            body = m.group(1).strip()
            body = body[1:].strip() if body.startswith("-") else body
            body = body[:-1].strip() if body.endswith("-") else body
            if body.startswith("/*"):
                if not body.endswith("*/"):
                    problems.append("an unterminated comment")
                continue
            if "{{" in m.group(1):
                problems.append("nested {{")
            word = re.match(r"^(\w+)", body)
            w = word.group(1) if word else ""
            line = text.count("\n", 0, m.start()) + 1
            if w in open_kw:
                stack.append((w, line))
                if w == "define":
                    dm = re.match(r'^define\s+"([^"]+)"', body)
                    if dm:
                        defined.add(dm.group(1))
                    if len(stack) > 1:
                        problems.append(f"define inside a block at line {line}")
            elif w == "end":
                if not stack:
                    problems.append(f"'end' without an open block at line {line}")
                else:
                    stack.pop()
            elif w == "else" and not stack:
                problems.append(f"'else' outside a block at line {line}")
            included.update(re.findall(r'(?:include|template)\s+"([^"]+)"', body))
        if "{{" in text[pos:] or "}}" in text[pos:]:
            problems.append("a stray {{ or }} at the end")
        for w, line in stack:
            problems.append(f"'{w}' at line {line} is never closed")
        if problems:
            rep.fail(f"templates/{fn}: " + "; ".join(problems))
        else:
            rep.ok(f"templates/{fn}: actions and blocks balanced")
    missing = sorted(included - defined)
    rep.expect(not missing, f"{len(included)} included templates are all defined",
               f"included but never defined: {missing}")
    for rel in ("files/topics.json", "files/dashboards/herald.json"):
        try:
            json.load(open(os.path.join(CHART, rel), encoding="utf-8"))
            rep.ok(f"{rel} parses as JSON")
        except (OSError, ValueError) as e:
            rep.fail(f"{rel}: {e}")
    try:
        chart = parse_yaml(open(os.path.join(CHART, "Chart.yaml"), encoding="utf-8").read())
        rep.expect(chart.get("apiVersion") == "v2" and chart.get("name") == "herald",
                   f"Chart.yaml: apiVersion v2, name herald, version {chart.get('version')}",
                   f"Chart.yaml: want apiVersion v2 and name herald, got {chart.get('apiVersion')} {chart.get('name')}")
    except (OSError, YamlError) as e:
        rep.note(f"Chart.yaml not checked by the simple reader: {e}")

    print()
    if rep.failures:
        print(f"FAILED: {len(rep.failures)} problem(s)")
        for f in rep.failures:
            print(f"  - {f}")
        return 1
    print("PASSED: the chart matches the binary and topics/topics.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
