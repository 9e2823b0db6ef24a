"""Action-item quality (SMART) and blameless-language hints for a draft.

`check_items` judges each action item: specific (not a vague wish), measurable (`done_when` says how anyone can tell
it is done), assignable (one person of the directory owns it), realistic (its due date within the policy's for its
priority) and time-bound (it has a due date). Each finding blocks when the policy's `quality.block` names its check
(default: measurable, assignable, time_bound), else it warns.

`blameless_hints` points at blame language in the report's free text ("human error", "bob's mistake",
"because alice ...", "should have" about a person) with a way to say it about the system. Hints never block.

Pure and deterministic, for workflow code: no I/O, no clock, no randomness; plain string operations over words
(the standard library, pydantic, and closeloop's models, policy and durations, which are pure too). The only
regular expressions are this module's constants: the config's phrases are matched as word sequences, never compiled.
A draft of 50 items checks in about 3 ms (one core, a directory of 300 people, a third of the owners unknown); the
hints of a long report (4 sections of 20 sentences and 100 timeline entries) in about 10 ms.

Decisions, for whoever wires this in:
- time_bound: an item without `due_in` gets the policy's due date for its priority, so it is time-bound; only a
  policy without a due for that priority (item_due always has P1..P4 once validated) makes it a finding.
- specific: the title only (it is what a ticket list shows). A title matching a vague phrase still passes when it
  also names a concrete change: a measurable target anywhere ("> 2%", "p99", "5 min", "to 50"), or another part of
  the title ("Improve monitoring: add ...", "... by adding ...") with a change verb and what it changes. A verb
  right after the phrase is the wish's object ("Consider adding a breaker" stays a wish). A title of fewer than two
  meaningful words is a finding too ("Monitoring", "TBD").
- measurable: an empty `done_when`, or a placeholder one ("done", "tbd", "n/a", "when fixed").
- blameless "should have", "failed to", "X caused", "because X": only when its subject is a person (a directory key,
  name or first name), a role ("the on-call", "the engineer") or a personal pronoun: "the health check should have
  a timeout" is about the system and is left alone. Attributing a cause to a person is not looked for in "what went
  well" and "where we got lucky" (there it is credit: "because alice noticed the spike"), nor after "because" when
  the person's verb is credit ("noticed", "caught", "escalated", ...)."""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta

from closeloop.durations import format_duration as _fmt
from closeloop.models import ActionItemSpec, DraftSubmission, Finding
from closeloop.policy import Policy, QualityCheck

_Add = Callable[[QualityCheck, str, str, str], None]

# --------------------------------------------------------------------------- words

# Words for the vague-phrase match: hyphens split ("double-check" is "double check"), apostrophes stay.
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")
# Words for the blame patterns: hyphenated words stay whole ("fault-tolerant" is not "fault", "on-call" is a role).
_BWORD = re.compile(r"[^\W_]+(?:['’\-][^\W_]+)*")
# Clause breaks inside a title: "Improve monitoring: add ...", "X (Y)", "X - Y", "X; Y", "X, Y".
_CLAUSE = re.compile(r"[:;,()\[\]{}—–]|\s-\s|\.(?:\s|$)")
_SENTENCE = re.compile(r"(?<=[.!?;])\s+|\n+")
# A measurable target: a comparison, a percentage or percentile, a number with a unit, "to/under/within N".
_MEASURE = re.compile(
    r"[<>=≤≥%]|\bp\d{2,3}\b"
    r"|\b\d+(?:\.\d+)?\s*(?:ms|s|secs?|seconds?|m|mins?|minutes?|h|hrs?|hours?|d|days?|w|weeks?|percent|x|k|"
    r"rps|qps|kb|mb|gb|tb)\b"
    r"|\b(?:to|under|below|above|over|within|than|least|most|max|min|maximum|minimum)\s+\d",
    re.IGNORECASE,
)

# Left out of the vague match, so "Improve the monitoring" is "improve monitoring".
_FILLER = frozenset({"the", "a", "an", "our", "its", "their", "your", "my", "all", "this", "these", "those"})
# Not what an item changes: filler, small words, and the words vague wishes are made of.
_LIGHT = _FILLER | frozenset({
    "to", "for", "of", "in", "on", "at", "with", "by", "from", "into", "onto", "when", "if", "that", "which", "who",
    "is", "are", "be", "was", "were", "it", "and", "or", "so", "as", "we", "us", "more", "better", "less", "some",
    "any", "things", "thing", "stuff", "etc", "also", "again", "properly", "further", "between", "across", "around",
    "about", "team", "teams", "people", "everyone", "general", "overall", "going", "forward", "future", "tbd",
    "todo", "n", "a", "fix", "follow", "up", "improve", "monitor", "monitoring", "process",
})
# Verbs that name a change ("add an alert", "reject configs", "rotate keys"), compared by stem.
_CHANGE_VERBS = (
    "add", "alert", "page", "create", "write", "document", "remove", "delete", "drop", "set", "raise", "lower", "cap",
    "limit", "enable", "disable", "validate", "reject", "block", "require", "automate", "migrate", "replace",
    "upgrade", "downgrade", "pin", "rotate", "introduce", "implement", "build", "split", "move", "configure",
    "schedule", "gate", "revert", "instrument", "expose", "emit", "enforce", "publish", "shard", "throttle", "retry",
    "backfill", "deprecate", "tune", "increase", "decrease", "reduce", "lock", "restrict", "run", "notify", "link",
    "wire", "fix", "test", "route", "rename", "extend", "shorten", "alarm", "dashboard", "record", "track", "check",
)
# Words that join a wish to the change that fulfils it: "Improve monitoring by adding ...".
_CONNECTORS = frozenset({"by", "with", "via", "using", "through", "and", "plus", "then", "eg"})
_PLACEHOLDER_DONE = frozenset({
    "", "done", "tbd", "todo", "n/a", "na", "none", "-", "?", "when done", "when it is done", "when it's done",
    "fixed", "when fixed", "complete", "completed", "when complete", "when completed", "yes", "ok", "it works",
    "works", "resolved", "when resolved",
})


@functools.lru_cache(maxsize=4096)  # a pure function of its word: the cache changes nothing but speed
def _stem(word: str) -> str:
    """A crude, deterministic stem: "improving", "improved", "improves", "improve" are all "improv"."""
    w = word.lower().replace("’", "'")
    if w.endswith("'s"):
        w = w[:-2]
    for suffix in ("ing", "ed", "es", "s"):
        if len(w) > len(suffix) + 2 and w.endswith(suffix) and not (suffix == "s" and w.endswith("ss")):
            w = w[: -len(suffix)]
            break
    if len(w) > 3 and w.endswith("e"):
        w = w[:-1]
    return w


_CHANGE_STEMS = frozenset(_stem(v) for v in _CHANGE_VERBS)
_LIGHT_STEMS = frozenset(_stem(v) for v in _LIGHT)


@dataclass(frozen=True, slots=True)
class _Phrase:
    parts: tuple[tuple[str, ...], ...]  # stems of each part; "..." between parts stands for any words
    text: str


def _phrase(text: str) -> _Phrase | None:
    parts = []
    for part in text.replace("…", "...").split("..."):
        stems = tuple(_stem(w) for w in _WORD.findall(part) if w.lower() not in _FILLER)
        if stems:
            parts.append(stems)
    return _Phrase(tuple(parts), text) if parts else None


_PhraseIndex = dict[str, list[_Phrase]]  # the first word -> the phrases starting with it, in the policy's order


def _phrase_index(texts: Sequence[str]) -> _PhraseIndex:
    index: _PhraseIndex = {}
    for text in texts:
        phrase = _phrase(text)
        if phrase is not None:
            index.setdefault(phrase.parts[0][0], []).append(phrase)
    return index


def _find(words: Sequence[str], seq: tuple[str, ...], start: int) -> int:
    """The first index >= start where `seq` occurs in `words`, or -1."""
    n = len(seq)
    for i in range(start, len(words) - n + 1):
        if words[i] == seq[0] and tuple(words[i : i + n]) == seq:
            return i
    return -1


def _matches(words: Sequence[str], index: _PhraseIndex) -> Iterator[tuple[_Phrase, int, int]]:
    """(phrase, first, last word index) of each occurrence of a phrase, its parts in order with anything in
    between, by position in the words."""
    for first, word in enumerate(words):
        for phrase in index.get(word, ()):
            if _find(words, phrase.parts[0], first) != first:
                continue
            end = first + len(phrase.parts[0])
            for part in phrase.parts[1:]:
                at = _find(words, part, end)
                if at < 0:
                    break
                end = at + len(part)
            else:
                yield phrase, first, end - 1


# --------------------------------------------------------------------------- action items


def _title_words(title: str) -> tuple[list[str], list[int]]:
    """The title's stems (filler left out) and, for each, the number of its clause."""
    stems: list[str] = []
    clauses: list[int] = []
    clause = 0
    for piece in _CLAUSE.split(title):
        clause += 1
        for w in _WORD.findall(piece):
            low = w.lower()
            if low in _FILLER:
                continue
            if low in _CONNECTORS:
                clause += 1
                continue
            stems.append(_stem(low))
            clauses.append(clause)
    return stems, clauses


def _vague(title: str, phrases: _PhraseIndex) -> str | None:
    """The vague phrase the title is made of, or None when it names a concrete change (or matches none)."""
    stems, clauses = _title_words(title)
    covered: set[int] = set()
    wish_clauses: set[int] = set()
    found: str | None = None
    for phrase, first, last in _matches(stems, phrases):
        found = found or phrase.text
        covered.update(range(first, last + 1))
        wish_clauses.update(clauses[first : last + 1])
    if found is None:
        content = [s for s in stems if s not in _LIGHT_STEMS]
        if len(content) < 2 and not _MEASURE.search(title):
            return title.strip()
        return None
    if _MEASURE.search(title):
        return None
    # Another clause with a change verb followed by at least two words of what it changes.
    for i, stem in enumerate(stems):
        if i in covered or clauses[i] in wish_clauses or stem not in _CHANGE_STEMS:
            continue
        rest = [s for j, s in enumerate(stems[i + 1 :], start=i + 1)
                if clauses[j] == clauses[i] and j not in covered and s not in _LIGHT_STEMS]
        if len(rest) >= 2:
            return None
    return found


_CONCRETE = {
    "detect": '"Alert when checkout 5xx > 2% for 5 min"',
    "prevent": '"Reject configs with pool_size=0 in the deploy validator"',
    "mitigate": '"Add a feature flag that turns off recommendations in under 1 min"',
    "process": '"Add the failover step with its kubectl command to the database runbook"',
}
_DONE_EXAMPLE = {
    "detect": '"a synthetic 5xx burst in staging pages the on-call within 5 min"',
    "prevent": '"a deploy with pool_size=0 is rejected in staging"',
    "mitigate": '"the flag turned off recommendations in under 1 min in a game day"',
    "process": '"the runbook is linked from the alert and was followed in the last drill"',
}


def _owner_hint(owner: str, people: Collection[str], cache: dict[str, str]) -> str:
    """" (did you mean 'bob'?)" for a key written in another case or nearly right (same first letter), else ""."""
    if owner not in cache:
        low = owner.lower()
        same = sorted(p for p in people if p.lower() == low)
        if not same:
            alike = sorted(p for p in people if p[:1].lower() == low[:1])
            same = difflib.get_close_matches(owner, alike[:500], n=1, cutoff=0.75)
        cache[owner] = f" (did you mean {same[0]!r}?)" if same else ""
    return cache[owner]


def check_items(draft: DraftSubmission, policy: Policy, people: Collection[str],
                teams: Collection[str] = ()) -> list[Finding]:
    """The SMART findings of the draft's action items, item by item, each check in order (specific, measurable,
    assignable, realistic, time_bound). `people`: the directory's person keys; `teams`: the team aliases."""
    quality = policy.quality
    blocking = set(quality.block)
    phrases = _phrase_index(quality.vague_phrases)
    hints: dict[str, str] = {}
    findings: list[Finding] = []

    def add(check: QualityCheck, where: str, message: str, suggestion: str) -> None:
        findings.append(Finding(check=check, where=where, message=message, suggestion=suggestion,
                                blocks=check in blocking))

    for n, item in enumerate(draft.action_items, start=1):
        where = f"action item {n}"
        _check_item(item, where, policy, phrases, people, teams, hints, add)
    return findings


def _check_item(item: ActionItemSpec, where: str, policy: Policy, phrases: _PhraseIndex,
                people: Collection[str], teams: Collection[str], hints: dict[str, str], add: _Add) -> None:
    title = item.title.strip()
    vague = _vague(title, phrases)
    if vague is not None:
        if vague.lower() == title.lower().rstrip(".!"):
            why = f'"{title}" is a wish, not a change'
        elif vague != title:
            why = f'"{title}": "{vague}" is a wish, not a change'
        else:
            why = f'"{title}" says too little to act on'
        add("specific", where, why,
            f"name the change and where it goes, e.g. {_CONCRETE[item.kind]}")

    done_when = " ".join(item.done_when.split()).lower().rstrip(".!")
    if done_when in _PLACEHOLDER_DONE:
        what = "has no done_when" if not done_when else f'has only "{item.done_when.strip()}" as its done_when'
        add("measurable", where, f'"{title}" {what}: nobody can tell when it is done',
            f"say what anyone can check, e.g. {_DONE_EXAMPLE[item.kind]}")

    owner = item.owner.strip()
    if not owner:
        add("assignable", where, f'"{title}" has no owner', "name one person from the directory who answers for it")
    elif owner not in people:
        if owner in teams:
            if not policy.quality.team_owners:
                add("assignable", where, f"{owner!r} is a team; the policy wants one person to own each item",
                    f"name the person in {owner!r} who answers for it (they may hand the work around)")
        else:
            add("assignable", where, f"{owner!r} is not a person in the directory{_owner_hint(owner, people, hints)}",
                "use a person's key from the directory: reminders and escalations go to them")

    due = policy.item_due.get(item.priority)
    if item.due_in is not None:
        if item.due_in <= timedelta(0):
            asked = _fmt(item.due_in) if item.due_in == timedelta(0) else f"-{_fmt(-item.due_in)}"
            add("realistic", where, f"{item.priority} item due in {asked}: no time at all",
                f"leave due_in out ({item.priority} items are due within {_fmt(due)})" if due is not None
                else "give it a due_in that leaves time to do the work")
        elif due is not None and item.due_in > due:
            fits = next((p for p, d in sorted(policy.item_due.items()) if d >= item.due_in), None)
            lower = f", or make it {fits} (due within {_fmt(policy.item_due[fits])})" if fits else ""
            add("realistic", where,
                f"{item.priority} items are due within {_fmt(due)} by the policy; this one asks {_fmt(item.due_in)}",
                f"split it: a first step that fits in {_fmt(due)} and the rest as its own item{lower}")
    elif due is None:
        add("time_bound", where, f"{item.priority} items have no due date in the policy, and this one sets none",
            'give it a due_in, e.g. "30d"')


# --------------------------------------------------------------------------- blameless language

_SECTIONS = (
    ("summary", "summary"), ("impact", "impact"), ("root_cause", "root cause"),
    ("contributing_factors", "contributing factors"), ("resolution", "resolution"), ("recovery", "recovery"),
    ("lessons", "lessons"), ("went_well", "what went well"), ("went_badly", "what went badly"),
    ("lucky", "where we got lucky"),
)
_CREDIT_SECTIONS = frozenset({"went_well", "lucky"})

_ROLES = frozenset({
    "engineer", "engineers", "developer", "developers", "dev", "devs", "operator", "operators", "on-call", "oncall",
    "on-caller", "oncaller", "on-callers", "sre", "sres", "admin", "admins", "sysadmin", "author", "reviewer",
    "reviewers", "approver", "team", "teammate", "someone", "somebody", "intern", "contractor",
    "person", "employee", "staff", "responder", "responders", "commander", "manager", "lead", "dba", "deployer",
    "committer", "assignee", "colleague", "hire", "newbie", "junior",
})
_SUBJECT_PRONOUNS = frozenset({"he", "she", "i", "we", "you"})
_OBJECT_PRONOUNS = frozenset({"him", "her"})
_HE_SHE = frozenset({"he", "she"})
_POSSESSIVE_PRONOUNS = frozenset({"his", "her", "their", "my", "your"})
_NOBODY = frozenset({"nobody", "noone", "no-one", "anyone", "anybody", "no", "not", "never", "without", "none",
                     "don't", "doesn't", "didn't", "isn't", "wasn't", "aren't", "weren't", "won't"})
# Between a subject and its verb: "alice had also", "the on-call really should have".
_SKIP = frozenset({
    "really", "also", "clearly", "obviously", "probably", "definitely", "simply", "just", "certainly", "then",
    "again", "likely", "apparently", "accidentally", "mistakenly", "unfortunately", "had", "has", "have", "was",
    "were", "is", "are", "been", "who", "that",
})
_DETERMINERS = frozenset({"the", "a", "an", "one", "our", "their", "that", "this", "of", "new"})
_CREDIT = frozenset({
    "noticed", "spotted", "caught", "fixed", "found", "resolved", "mitigated", "escalated", "recognized",
    "recognised", "remembered", "acted", "jumped", "helped", "knew", "rolled", "reverted", "responded", "stepped",
    "reacted", "identified", "diagnosed", "restored", "checked", "was", "happened", "had",
})
_CHARACTER = frozenset({
    "careless", "carelessly", "carelessness", "negligent", "negligently", "negligence", "incompetent",
    "incompetence", "incompetently", "sloppy", "sloppily", "sloppiness", "reckless", "recklessly", "recklessness",
    "irresponsible", "irresponsibly",
})
_MISTAKES = frozenset({
    "mistake", "mistakes", "error", "errors", "oversight", "oversights", "blunder", "screwup", "screw-up", "slip",
    "slip-up", "failure", "negligence", "carelessness", "incompetence", "fault",
})
# "the team's error budget", "his error rate": a possessive and "error" that are about a system.
_TECHNICAL_AFTER = frozenset({
    "budget", "budgets", "rate", "rates", "handling", "handler", "message", "messages", "log", "logs", "code",
    "codes", "page", "pages", "count", "counts", "injection", "tolerance", "tolerant", "domain", "domains",
    "isolation", "detection", "tree", "mode", "modes", "model", "line", "lines", "counter", "counters", "path",
})
_CAUSE_VERBS = frozenset({"caused", "broke", "messed", "screwed", "botched", "borked", "nuked"})
_BY_VERBS = frozenset({"caused", "broken", "introduced", "triggered"})
_HUMAN_ERROR = (("human", "error"), ("human", "errors"), ("human", "mistake"), ("operator", "error"),
                ("pilot", "error"), ("pebkac",), ("fat-fingered",), ("fat-finger",), ("fat", "fingered"))
_FORGOT = (("forgot", "to"), ("forgotten", "to"), ("neglected", "to"), ("didn't", "bother"),
           ("did", "not", "bother"), ("couldn't", "be", "bothered"), ("never", "bothered"))
_PHRASES: dict[str, list[tuple[str, tuple[str, ...]]]] = {}  # first word -> (kind, words)
for _kind, _all in (("human_error", _HUMAN_ERROR), ("forgot", _FORGOT)):
    for _words in _all:
        _PHRASES.setdefault(_words[0], []).append((_kind, _words))
# First names that are everyday words: taken as the person only when written with a capital.
_COMMON_NAMES = frozenset({
    "will", "may", "june", "april", "mark", "bill", "grant", "chase", "page", "rose", "summer", "art", "ray", "sky",
    "hope", "joy", "dawn", "amber", "faith", "max", "pat", "sue", "jack", "frank", "drew", "lane", "read", "case",
    "king", "long", "young", "hunter", "miles", "gene", "rich", "stan", "norm", "penny", "ruby", "crystal",
})

_SYSTEMS = "What in the system allowed this? e.g. 'the deploy tool accepted an unvalidated config'"
_KINDS = {
    "human_error": ("calls it human error",
                    "human error is where the analysis starts, not where it ends: what made the slip possible "
                    "and its effect so large? e.g. 'the deploy tool accepted an unvalidated config'"),
    "fault": ("assigns fault to someone", f"describe what happened, not whose fault it was. {_SYSTEMS}"),
    "blame": ("speaks of blame", f"leave blame out: describe the conditions. {_SYSTEMS}"),
    "hindsight": ("judges a person with hindsight",
                  "say what they knew and saw at the time and what made the other choice hard, e.g. 'the runbook "
                  "did not mention the failover step'"),
    "character": ("judges a person's character",
                  "describe the conditions, not the person, e.g. 'the command ran against production with no "
                  "confirmation prompt'"),
    "failed": ("says a person failed",
               "say what the system did or did not offer, e.g. 'the alert went to a channel nobody watches at "
               "night'"),
    "forgot": ("says a person forgot or did not bother",
               "what made the step easy to miss? e.g. 'the release checklist has no step to renew the "
               "certificate'"),
    "cause": ("names a person as the cause",
              f"name the change, not the person (e.g. 'the 14:02 deploy of config v42'). {_SYSTEMS}"),
}


@dataclass(frozen=True, slots=True)
class _Unit:
    word: str  # lower case, the possessive "'s" removed
    poss: bool
    person: str | None  # the directory key when the unit is a person's key or name
    start: int
    end: int


_Index = dict[str, list[tuple[tuple[str, ...], str, bool]]]


def _people_index(people: Mapping[str, str]) -> _Index:
    """first word -> [(words, key, needs a capital)], longest first: a person by key, full name or first name."""
    index: _Index = {}

    def add(words: tuple[str, ...], key: str, capital: bool) -> None:
        if words:
            index.setdefault(words[0], []).append((words, key, capital))

    for key in sorted(people):
        name = people[key]
        add(tuple(w.lower() for w in _BWORD.findall(key)), key, False)
        name_words = tuple(w.lower().replace("’", "'") for w in _BWORD.findall(name))
        add(name_words, key, len(name_words) == 1 and name_words[0] in _COMMON_NAMES)
        if len(name_words) > 1:
            add(name_words[:1], key, name_words[0] in _COMMON_NAMES)
    for entries in index.values():
        entries.sort(key=lambda e: -len(e[0]))
    return index


def _units(sentence: str, index: _Index) -> list[_Unit]:
    found = [(m.group(), m.start(), m.end()) for m in _BWORD.finditer(sentence)]
    low = [w.lower().replace("’", "'") for w, _, _ in found]
    base = [w[:-2] if w.endswith("'s") else w for w in low]
    units: list[_Unit] = []
    i = 0
    while i < len(found):
        hit = None
        for words, key, capital in index.get(base[i], ()):
            n = len(words)
            if i + n > len(found) or (capital and not found[i][0][:1].isupper()):
                continue
            if all((base[i + j] if j == n - 1 else low[i + j]) == w for j, w in enumerate(words)):
                hit = (key, n)
                break
        if hit:
            key, n = hit
            last = i + n - 1
            units.append(_Unit(base[last], low[last] != base[last], key, found[i][1], found[last][2]))
            i += n
        else:
            units.append(_Unit(base[i], low[i] != base[i], None, found[i][1], found[i][2]))
            i += 1
    return units


def _at(units: Sequence[_Unit], i: int, words: tuple[str, ...]) -> bool:
    return i + len(words) <= len(units) and all(units[i + j].word == w and not units[i + j].poss
                                                for j, w in enumerate(words))


def _someone(u: _Unit, pronouns: frozenset[str] = frozenset()) -> bool:
    return u.person is not None or u.word in _ROLES or u.word in pronouns


def _subject(units: Sequence[_Unit], i: int) -> int:
    """The index of the unit before i, past adverbs and auxiliaries (the subject of the verb at i), or -1."""
    j = i - 1
    while j >= 0 and units[j].word in _SKIP and units[j].person is None:
        j -= 1
    return j


def _after(units: Sequence[_Unit], i: int) -> int:
    """The index of the first unit at or after i past determiners ("the", "a", "our", "of", ...)."""
    while i < len(units) and units[i].word in _DETERMINERS and units[i].person is None and not units[i].poss:
        i += 1
    return i


def _technical(units: Sequence[_Unit], i: int) -> bool:
    """Whether the unit at i makes the words before it a system's: "error rate", "fault injection"."""
    return i < len(units) and units[i].word in _TECHNICAL_AFTER


def _negated(units: Sequence[_Unit], i: int) -> bool:
    return any(u.word in _NOBODY for u in units[max(0, i - 4) : i + 1])


def _blame(units: Sequence[_Unit], credit: bool) -> Iterator[tuple[str, int, int]]:
    """(kind, first unit, last unit) of each blame pattern in one sentence."""
    n = len(units)
    for i, u in enumerate(units):
        w = u.word
        for kind, words in _PHRASES.get(w, ()):
            if _at(units, i, words) and not (kind == "human_error" and _technical(units, i + len(words))):
                yield kind, i, i + len(words) - 1
        if w == "forgot" and not (i + 1 < n and units[i + 1].word == "to"):
            k = _subject(units, i)
            if k >= 0 and _someone(units[k], _SUBJECT_PRONOUNS):
                yield "forgot", k, i
        if w in _CHARACTER and u.person is None:
            yield "character", i, i
        if w in ("blame", "blamed", "blaming", "blames") and u.person is None:
            if not (i > 0 and units[i - 1].word == "git") and not _negated(units, i):
                yield "blame", max(0, i - 1) if i and units[i - 1].word == "to" else i, i
        if w == "fault" and u.person is None and i > 0 and not _technical(units, i + 1):
            owner = units[i - 1]
            if (owner.poss or owner.word in _POSSESSIVE_PRONOUNS | {"our"}) and not _negated(units, i - 1):
                yield "fault", i - 1, i
        if w == "fault" and _at(units, i, ("fault", "of")):
            j = _after(units, i + 2)
            if j < n and _someone(units[j], _OBJECT_PRONOUNS):
                yield "fault", i, j
        if w == "at" and _at(units, i, ("at", "fault")):
            k = _subject(units, i)
            if k >= 0 and _someone(units[k], _SUBJECT_PRONOUNS | {"they"}):
                yield "fault", k, i + 1
        # "should have", "shouldn't have", "should not have", "should've" about a person
        if w in ("should", "shouldn't", "should've", "shouldn't've"):
            j = i + 1 + (1 if i + 1 < n and units[i + 1].word == "not" else 0)
            if w.endswith("'ve") or (j < n and units[j].word in ("have", "'ve")):
                k = _subject(units, i)
                if k >= 0 and _someone(units[k], _SUBJECT_PRONOUNS | {"they"}):
                    yield "hindsight", k, min(j, n - 1)
        if w in ("failed", "fails", "fail") and i + 1 < n and units[i + 1].word == "to":
            k = _subject(units, i)
            if k >= 0 and _someone(units[k], _SUBJECT_PRONOUNS):
                yield "failed", k, i + 1
        # a person's mistake: "bob's mistake", "the on-call's error", "his oversight"
        if w in _MISTAKES and w != "fault" and i > 0 and not _technical(units, i + 1):
            owner = units[i - 1]
            if (owner.poss and _someone(owner)) or (owner.word in _POSSESSIVE_PRONOUNS and not owner.poss):
                yield "cause", i - 1, i
        if credit:
            continue
        if w in _CAUSE_VERBS and u.person is None:
            k = _subject(units, i)
            if k >= 0:
                if _someone(units[k], _HE_SHE):
                    yield "cause", k, i
                elif k > 0 and units[k - 1].poss and _someone(units[k - 1]):  # "bob's deploy caused"
                    yield "cause", k - 1, i
        if w in _BY_VERBS and i + 1 < n and units[i + 1].word == "by":
            j = _after(units, i + 2)
            if j < n and _someone(units[j], _OBJECT_PRONOUNS):
                yield "cause", i, j
        if w == "because" or (w == "due" and _at(units, i, ("due", "to"))):
            j = _after(units, i + (1 if w == "because" else 2))
            if j < n and _someone(units[j], _HE_SHE):
                if not (j + 1 < n and units[j + 1].word in _CREDIT and not units[j].poss):
                    yield "cause", i, j


def blameless_hints(draft: DraftSubmission, people: Mapping[str, str]) -> list[Finding]:
    """Blame language in the report's free text (the sections, then the timeline's entries), each with a way to
    say it about the system. `people`: person key -> name. Hints never block."""
    index = _people_index(people)
    texts: list[tuple[str, str, bool]] = [
        (label, getattr(draft, field), field in _CREDIT_SECTIONS) for field, label in _SECTIONS]
    texts += [(f"timeline entry {n}", event.text, False) for n, event in enumerate(draft.timeline, start=1)]
    findings: list[Finding] = []
    seen: set[tuple[str, str, str]] = set()
    for where, text, credit in texts:
        if not text.strip():
            continue
        for sentence in _SENTENCE.split(text):
            units = _units(sentence, index)
            for kind, first, last in _blame(units, credit):
                snippet = " ".join(sentence[units[first].start : units[last].end].split())
                if (where, kind, snippet.lower()) in seen:
                    continue
                seen.add((where, kind, snippet.lower()))
                what, suggestion = _KINDS[kind]
                findings.append(Finding(check="blameless", where=where, message=f'"{snippet}" {what}',
                                        suggestion=suggestion, blocks=False))
    return findings
