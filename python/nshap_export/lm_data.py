"""Eval sets for language models: prompts + answers -> the token tensors nshap reads.

    from nshap_export.lm_data import ioi_prompts, encode_eval_set, save_eval_set, single_token_names
    names = single_token_names("tokenizer.json", ["Mary", "John", "Alice", "Bob", "Anna"])
    prompts, answers, distractors, corrupted = ioi_prompts(names, 64, seed=0)
    arrays = encode_eval_set("tokenizer.json", prompts, answers, distractors, corrupted)
    save_eval_set(arrays, "eval.safetensors")

The file holds (all int64): ``tokens`` [N, T] right-padded with the pad id to the longest
prompt; ``positions`` [N] = prompt tokens - 1 (whose next-token logits the metric reads);
``labels`` [N] = the answer's first token; optionally ``distractors`` [N] (for ``logit_diff``) and
``corrupted`` [N, T] (a paired prompt with exactly as many tokens as the clean one, for resample
ablation). Tokenization uses the Hugging Face ``tokenizers`` package (``pip install nshap[lm]``).

The command line: ``nshap-lm-data --tokenizer tokenizer.json --ioi --n 64 --out eval.safetensors``
or ``nshap-lm-data --tokenizer tokenizer.json --prompts prompts.jsonl --out eval.safetensors``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import string
import sys
import tempfile
import warnings

import numpy as np

EXIT_BAD_INPUT = 2
EXIT_ERROR = 1
MAX_LINES = 20  # problems listed in one error; the rest are counted

# Indirect object identification (Wang et al. 2022): {A} is the indirect object (the answer),
# {B} the subject (the distractor, named twice). Two ABB and two BAB templates; every name follows
# a space, so a name that is one token after a space keeps clean and corrupted prompts aligned.
IOI_TEMPLATES = (
    "When {A} and {B} went to the store, {B} gave a drink to",
    "When {B} and {A} went to the park, {B} gave a ball to",
    "Then, {A} and {B} had a long argument, and afterwards {B} said to",
    "Then, {B} and {A} were working at the office. {B} decided to give a letter to",
)

# Common first names; ``single_token_names`` keeps the ones a tokenizer encodes as one token.
DEFAULT_NAMES = (
    "Mary", "John", "Alice", "Bob", "Tom", "James", "Sarah", "David", "Anna", "Paul",
    "Lisa", "Mark", "Emma", "Kevin", "Laura", "Peter", "Jessica", "Michael", "Rachel", "Daniel",
    "Kate", "Steven", "Amy", "Brian", "Grace", "Jason", "Helen", "Eric", "Rose", "Adam",
)


def load_tokenizer(tokenizer):
    """A ``tokenizers.Tokenizer``, or one read from a tokenizer.json path (ValueError if unreadable)."""
    try:
        from tokenizers import Tokenizer
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("nshap_export.lm_data needs the `tokenizers` package: pip install 'nshap[lm]'") from e
    if isinstance(tokenizer, Tokenizer):
        tok = tokenizer
    elif isinstance(tokenizer, (str, os.PathLike)):
        path = os.fspath(tokenizer)
        if not os.path.isfile(path):
            raise ValueError(f"no such tokenizer file {path!r}")
        try:
            tok = Tokenizer.from_file(path)
        except Exception as e:
            raise ValueError(f"cannot read tokenizer {path!r}: {e}") from None
    else:
        raise TypeError(f"tokenizer: expected a tokenizers.Tokenizer or a tokenizer.json path, got {type(tokenizer).__name__}")
    if tok.padding is not None or tok.truncation is not None:
        # a tokenizer.json may enable padding/truncation; encode each text as it is (on a copy)
        tok = Tokenizer.from_str(tok.to_str())
        tok.no_padding()
        tok.no_truncation()
    return tok


def _ids(tok, texts, add_special_tokens=False):
    return [e.ids for e in tok.encode_batch(list(texts), add_special_tokens=add_special_tokens)]


def _continuation(tok, prompts, texts):
    """Token ids of each text as it continues its prompt (None where the prompt's own tokens are
    not a prefix of the joint encoding), then the text's standalone ids as the fallback.

    In context, " Mary" after "... to" is what the model predicts; encoded alone it can differ
    (sentencepiece tokenizers that prepend "▁" give "▁▁Mary" -> ["▁", "▁Mary"])."""
    base = _ids(tok, prompts)
    joint = _ids(tok, [p + t for p, t in zip(prompts, texts)])
    alone = _ids(tok, texts)
    out, fallback = [], []
    for b, j, a in zip(base, joint, alone):
        if len(j) > len(b) and j[: len(b)] == b:
            out.append(j[len(b):])
            fallback.append(False)
        else:
            out.append(a)
            fallback.append(True)
    return out, fallback


def _raise_all(problems, what="eval set"):
    if not problems:
        return
    lines = problems[:MAX_LINES]
    if len(problems) > MAX_LINES:
        lines.append(f"... and {len(problems) - MAX_LINES} more")
    n = len(problems)
    raise ValueError(f"{n} problem{'s' if n != 1 else ''} in the {what}:\n  " + "\n  ".join(lines))


def encode_eval_set(tokenizer, prompts, answers, distractors=None, corrupted=None, pad_id=0,
                    add_special_tokens=False, pad_token=None, _where=None):
    """Tokenize prompts into nshap's eval-set arrays (int64): ``tokens`` [N, T], ``positions``,
    ``labels`` and, when given, ``distractors`` and ``corrupted`` [N, T].

    ``tokenizer`` is a ``tokenizers.Tokenizer`` or a tokenizer.json path. Each answer/distractor
    is tokenized as the continuation of its prompt (falling back to its own encoding when it merges
    with the prompt's last token) and its first token used; more than one token gives a single
    warning with the count. Prompts are right-padded with ``pad_id`` (or the id of ``pad_token``)
    to the longest one. ``add_special_tokens`` applies the tokenizer's post-processor (e.g. a BOS
    token) to prompts and corrupted prompts, never to answers.

    Every problem (empty prompt, empty answer, answer token == distractor token, corrupted prompt
    with another token count than its clean prompt) is collected and raised in one ValueError.
    """
    tok = load_tokenizer(tokenizer)
    prompts = list(prompts)
    answers = list(answers)
    n = len(prompts)
    if n == 0:
        raise ValueError("no prompts: an eval set needs at least one example")
    sizes = {"answers": answers}
    if distractors is not None:
        distractors = list(distractors)
        sizes["distractors"] = distractors
    if corrupted is not None:
        corrupted = list(corrupted)
        sizes["corrupted"] = corrupted
    wrong = [f"{len(v)} {k}" for k, v in sizes.items() if len(v) != n]
    if wrong:
        raise ValueError(f"{n} prompts but {', '.join(wrong)}: give one per prompt")
    if pad_token is not None:
        pid = tok.token_to_id(pad_token)
        if pid is None:
            raise ValueError(f"pad token {pad_token!r} is not in the tokenizer's vocabulary")
        pad_id = pid
    if not isinstance(pad_id, (int, np.integer)) or not 0 <= int(pad_id) < 2**31:
        raise ValueError(f"pad id must be an integer in [0, 2^31), got {pad_id!r}")
    where = list(_where) if _where is not None else [f"example {i}" for i in range(n)]
    if len(where) != n:
        raise ValueError(f"{n} prompts but {len(where)} example names")
    kinds = {"prompt": prompts, "answer": answers, "distractor": distractors, "corrupted prompt": corrupted}
    for kind, texts in kinds.items():
        bad = [i for i, t in enumerate(texts or ()) if not isinstance(t, str)]
        if bad:
            raise TypeError(f"{where[bad[0]]}: the {kind} is a {type(texts[bad[0]]).__name__}, not a str")

    problems = []
    p_ids = _ids(tok, prompts, add_special_tokens)
    c_ids = _ids(tok, corrupted, add_special_tokens) if corrupted is not None else None
    a_ids, a_fb = _continuation(tok, prompts, answers)
    d_ids, d_fb = _continuation(tok, prompts, distractors) if distractors is not None else (None, None)

    multi = []  # (where, text, count)
    merged = 0
    for i in range(n):
        w = where[i]
        if not prompts[i].strip() or not p_ids[i]:
            problems.append(f"{w}: the prompt {prompts[i]!r} is empty")
        for kind, ids, fb, texts in (("answer", a_ids, a_fb, answers), ("distractor", d_ids, d_fb, distractors)):
            if ids is None:
                continue
            if not ids[i]:
                problems.append(f"{w}: the {kind} {texts[i]!r} encodes to no tokens")
                continue
            if len(ids[i]) > 1:
                multi.append((w, kind, texts[i], len(ids[i])))
            merged += fb[i]
        if d_ids is not None and a_ids[i] and d_ids[i] and a_ids[i][0] == d_ids[i][0]:
            t = tok.id_to_token(a_ids[i][0])
            problems.append(f"{w}: the answer {answers[i]!r} and the distractor {distractors[i]!r} "
                            f"begin with the same token {a_ids[i][0]} ({t!r}), so their logit difference is always 0")
        if c_ids is not None and p_ids[i] and len(c_ids[i]) != len(p_ids[i]):
            problems.append(f"{w}: the corrupted prompt has {len(c_ids[i])} tokens, the clean prompt "
                            f"{len(p_ids[i])} (they must be equal; use names/words of one token each)")
    _raise_all(problems)

    if multi:
        w, kind, text, k = multi[0]
        k_all = len(multi)
        warnings.warn(f"{k_all} answer{'s' if k_all != 1 else ''}/distractor{'s' if k_all != 1 else ''} "
                      f"encode{'' if k_all != 1 else 's'} to more than one token; the first token is "
                      f"used (e.g. {w}: the {kind} {text!r} is {k} tokens)", stacklevel=2)
    if merged:
        warnings.warn(f"{merged} answer(s)/distractor(s) merge with the last token of their prompt; their own "
                      "tokenization is used instead", stacklevel=2)
    if add_special_tokens:
        plain = tok.encode(prompts[0], add_special_tokens=False).ids
        if plain and p_ids[0][-len(plain):] != plain:
            warnings.warn("the tokenizer's post-processor appends special tokens after the prompt (e.g. EOS); "
                          "positions point at the last of them", stacklevel=2)

    T = max(len(p) for p in p_ids)
    tokens = np.full((n, T), int(pad_id), dtype=np.int64)
    for i, p in enumerate(p_ids):
        tokens[i, : len(p)] = p
    out = {
        "tokens": tokens,
        "positions": np.array([len(p) - 1 for p in p_ids], dtype=np.int64),
        "labels": np.array([a[0] for a in a_ids], dtype=np.int64),
    }
    if d_ids is not None:
        out["distractors"] = np.array([d[0] for d in d_ids], dtype=np.int64)
    if c_ids is not None:
        cor = np.full((n, T), int(pad_id), dtype=np.int64)
        for i, c in enumerate(c_ids):
            cor[i, : len(c)] = c
        out["corrupted"] = cor
    return out


def save_eval_set(arrays, path):
    """Write the arrays of ``encode_eval_set`` to a safetensors file (int64, atomically)."""
    from safetensors.numpy import save_file

    known = {"tokens": 2, "positions": 1, "labels": 1, "distractors": 1, "corrupted": 2}
    missing = [k for k in ("tokens", "labels") if k not in arrays]
    if missing:
        raise ValueError(f"an eval set needs {' and '.join(missing)}")
    n = np.asarray(arrays["tokens"]).shape[0]
    tensors = {}
    for k, v in arrays.items():
        v = np.ascontiguousarray(np.asarray(v), dtype=np.int64)
        if k in known and (v.ndim != known[k] or v.shape[0] != n):
            raise ValueError(f"{k}: shape {list(v.shape)} does not fit {n} examples")
        tensors[k] = v
    if "corrupted" in tensors and tensors["corrupted"].shape != tensors["tokens"].shape:
        raise ValueError(f"corrupted {list(tensors['corrupted'].shape)} and tokens {list(tensors['tokens'].shape)} differ")
    path = os.fspath(path)
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".safetensors", dir=d)
    os.close(fd)
    try:
        save_file(tensors, tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def single_token_names(tokenizer, names, context="and"):
    """The names that are one token after a space, as they appear in the IOI templates: those
    whose ``context + " " + name`` encodes to exactly one token more than ``context``, and not to
    the tokenizer's unknown token."""
    tok = load_tokenizer(tokenizer)
    names = list(names)
    unk = getattr(tok.model, "unk_token", None)
    unk_id = tok.token_to_id(unk) if isinstance(unk, str) else None
    base = tok.encode(context, add_special_tokens=False).ids
    full = _ids(tok, [f"{context} {nm}" for nm in names])
    return [nm for nm, f in zip(names, full)
            if len(f) == len(base) + 1 and f[: len(base)] == base and f[-1] != unk_id]


def _template_fields(t):
    try:
        return {f for _, f, _, _ in string.Formatter().parse(t) if f is not None}
    except ValueError as e:
        raise ValueError(f"template {t!r}: {e}") from None


def ioi_prompts(names, n, seed=0, templates=None):
    """``n`` IOI prompts: ``(prompts, answers, distractors, corrupted)``, lists of strings.

    Each example picks a template (with ``{A}``, the indirect object, and ``{B}``, the subject;
    default ``IOI_TEMPLATES``) and four distinct names A, B, C, D with ``random.Random(seed)``: the
    prompt is the template with A and B, the answer ``" A"``, the distractor ``" B"``, and the
    corrupted prompt the ABC counterfactual, the same template with C and D in place of A and B
    (so the indirect-object signal is gone). Clean and corrupted prompts have the same token count
    when every name is one token after a space (see ``single_token_names``) and the template puts
    each name after a space."""
    names = list(dict.fromkeys(str(nm).strip() for nm in names if str(nm).strip()))
    if len(names) < 4:
        raise ValueError(f"IOI prompts need at least 4 distinct names (A, B and C, D for the corrupted prompt), got {len(names)}")
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    templates = list(IOI_TEMPLATES if templates is None else templates)
    if not templates:
        raise ValueError("no templates")
    problems = []
    for t in templates:
        f = _template_fields(t)
        if not {"A", "B"} <= f or f - {"A", "B"}:
            problems.append(f"template {t!r}: needs the fields {{A}} and {{B}} and no others, has {sorted(f)}")
    _raise_all(problems, "IOI templates")
    rng = random.Random(seed)
    prompts, answers, distractors, corrupted = [], [], [], []
    for _ in range(n):
        t = rng.choice(templates)
        a, b, c, d = rng.sample(names, 4)
        prompts.append(t.format(A=a, B=b))
        answers.append(" " + a)
        distractors.append(" " + b)
        corrupted.append(t.format(A=c, B=d))
    return prompts, answers, distractors, corrupted


def read_jsonl(path):
    """``(prompts, answers, distractors, corrupted, where)`` from a jsonl file of
    ``{"prompt", "answer", "distractor"?, "corrupted"?}`` objects; distractor and corrupted are
    given on every line or on none. All problems are raised at once (ValueError)."""
    keys = {"prompt", "answer", "distractor", "corrupted"}
    rows, problems = [], []
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise ValueError(f"cannot read {path!r}: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"{path!r} is not UTF-8 text: {e}") from None
    for ln, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            problems.append(f"line {ln}: not JSON ({e.msg} at column {e.colno})")
            continue
        if not isinstance(obj, dict):
            problems.append(f"line {ln}: expected an object with \"prompt\" and \"answer\", got {type(obj).__name__}")
            continue
        bad = False
        for k in sorted(set(obj) - keys):
            problems.append(f"line {ln}: unknown key {k!r} (expected prompt, answer, distractor, corrupted)")
            bad = True
        for k in ("prompt", "answer"):
            if k not in obj:
                problems.append(f"line {ln}: missing {k!r}")
                bad = True
        for k in keys & set(obj):
            if not isinstance(obj[k], str):
                problems.append(f"line {ln}: {k!r} is a {type(obj[k]).__name__}, not a string")
                bad = True
        if not bad:
            rows.append((ln, obj))
    if not rows and not problems:
        problems.append("no examples (the file is empty)")
    for k in ("distractor", "corrupted"):
        have = [ln for ln, o in rows if k in o]
        if have and len(have) != len(rows):
            lack = [ln for ln, o in rows if k not in o]
            shown = ", ".join(map(str, lack[:10])) + (", ..." if len(lack) > 10 else "")
            problems.append(f"{k!r} is on {len(have)} lines but missing on {len(lack)} (lines {shown}): give it on every line or none")
    _raise_all(problems, path)

    def col(k):
        return [o[k] for _, o in rows] if k in rows[0][1] else None

    return col("prompt"), col("answer"), col("distractor"), col("corrupted"), [f"line {ln}" for ln, _ in rows]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="nshap-lm-data",
        description="Build a language-model eval set (tokens, positions, labels, distractors, corrupted) "
                    "for nshap from IOI templates or a jsonl file of prompts, with a tokenizer.json.",
    )
    ap.add_argument("--tokenizer", required=True, help="a Hugging Face tokenizer.json")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--ioi", action="store_true", help="indirect object identification prompts with ABC counterfactuals")
    src.add_argument("--prompts", metavar="FILE.jsonl",
                     help='one {"prompt", "answer", "distractor"?, "corrupted"?} object per line')
    ap.add_argument("--out", required=True, help="output .safetensors file (written atomically)")
    ap.add_argument("--names", help="--ioi: comma-separated names (default: a built-in list); names that are not one token are dropped")
    ap.add_argument("--template", action="append", metavar="T",
                    help="--ioi: a template with {A} (the answer) and {B} (the subject); repeat for several (default: 4 built in)")
    ap.add_argument("--n", type=int, default=64, help="--ioi: number of prompts (default 64)")
    ap.add_argument("--seed", type=int, default=0, help="--ioi: seed for templates and names (default 0)")
    ap.add_argument("--pad-id", type=int, default=0, help="padding token id (default 0)")
    ap.add_argument("--pad-token", help="padding token, by name (overrides --pad-id)")
    ap.add_argument("--add-special-tokens", action="store_true",
                    help="apply the tokenizer's post-processor to prompts (e.g. a BOS token)")
    a = ap.parse_args(argv)

    def fail(msg, code=EXIT_BAD_INPUT):
        print(f"nshap-lm-data: {msg}", file=sys.stderr)
        print("nothing written", file=sys.stderr)
        return code

    if not a.ioi and (a.names is not None or a.template):
        return fail("--names and --template go with --ioi")
    try:
        tok = load_tokenizer(a.tokenizer)
    except ImportError as e:
        return fail(str(e), EXIT_ERROR)
    except ValueError as e:
        return fail(str(e))

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if a.ioi:
                given = DEFAULT_NAMES if a.names is None else [s.strip() for s in a.names.split(",") if s.strip()]
                names = single_token_names(tok, given)
                dropped = [nm for nm in given if nm not in names]
                if dropped:
                    print(f"dropped {len(dropped)} name(s) that are not one token: {', '.join(dropped[:20])}"
                          + (", ..." if len(dropped) > 20 else ""), file=sys.stderr)
                if len(set(names)) < 4:
                    return fail(f"--ioi needs at least 4 single-token names, have {len(set(names))}"
                                + (f" ({', '.join(names)})" if names else ""))
                prompts, answers, distractors, corrupted = ioi_prompts(names, a.n, seed=a.seed, templates=a.template)
                where = None
            else:
                prompts, answers, distractors, corrupted, where = read_jsonl(a.prompts)
            arrays = encode_eval_set(tok, prompts, answers, distractors, corrupted, pad_id=a.pad_id,
                                     add_special_tokens=a.add_special_tokens, pad_token=a.pad_token, _where=where)
        except (ValueError, TypeError) as e:
            return fail(str(e))
    for w in caught:
        print(f"nshap-lm-data: warning: {w.message}", file=sys.stderr)
    try:
        save_eval_set(arrays, a.out)
    except (OSError, ValueError) as e:
        return fail(f"cannot write {a.out}: {e}", EXIT_ERROR)
    n, T = arrays["tokens"].shape
    print(f"wrote {a.out}: {n} examples, {T} positions ({', '.join(arrays)})")
    label = tok.id_to_token(int(arrays["labels"][0]))
    extra = ""
    if "distractors" in arrays:
        extra = f" vs {tok.id_to_token(int(arrays['distractors'][0]))!r}"
    print(f"example 0: {prompts[0]!r} -> {label!r}{extra}")
    if corrupted is not None:
        print(f"corrupted: {corrupted[0]!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
