"""Language-model eval sets (nshap_export.lm_data) with small tokenizers built here (no hub)."""

import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

tokenizers = pytest.importorskip("tokenizers")
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors  # noqa: E402
from safetensors.numpy import load_file  # noqa: E402

from conftest import PY_ROOT  # noqa: E402
from nshap_export.lm_data import (  # noqa: E402
    DEFAULT_NAMES,
    IOI_TEMPLATES,
    encode_eval_set,
    ioi_prompts,
    main,
    save_eval_set,
    single_token_names,
)

NAMES = ["Mary", "John", "Alice", "Bob", "Tom", "Sarah", "Anna", "Paul"]
EXTRA = "The cat sat on the mat . Then she said hello to the dog and ran - Ann"


def _vocab(texts):
    pt = pre_tokenizers.ByteLevel(add_prefix_space=False)
    vocab = {"[PAD]": 0, "[UNK]": 1, "<s>": 2}
    for t in texts:
        for w, _ in pt.pre_tokenize_str(t):
            vocab.setdefault(w, len(vocab))
    return vocab


def gpt2_like(names=NAMES, bos=False):
    """A word-level tokenizer with GPT-2's byte-level pre-tokenizer: " Mary" is one token ("ĠMary")."""
    texts = [t.format(A=a, B=b) for t in IOI_TEMPLATES for a in names for b in names] + [EXTRA]
    tok = Tokenizer(models.WordLevel(_vocab(texts), unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    if bos:
        tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 2)])
    return tok


@pytest.fixture
def tok_path(tmp_path):
    p = tmp_path / "tokenizer.json"
    gpt2_like().save(str(p))
    return str(p)


def test_ioi_shapes_padding_positions_labels(tok_path):
    prompts, answers, distractors, corrupted = ioi_prompts(NAMES, 24, seed=3)
    arr = encode_eval_set(tok_path, prompts, answers, distractors, corrupted)
    assert set(arr) == {"tokens", "positions", "labels", "distractors", "corrupted"}
    tok = Tokenizer.from_file(tok_path)
    lens = [len(tok.encode(p).ids) for p in prompts]
    assert len(set(lens)) > 1  # templates of several lengths: padding matters
    T = max(lens)
    assert arr["tokens"].shape == arr["corrupted"].shape == (24, T)
    for k in ("positions", "labels", "distractors"):
        assert arr[k].shape == (24,)
    for v in arr.values():
        assert v.dtype == np.int64
    for i, p in enumerate(prompts):
        ids = tok.encode(p).ids
        assert arr["tokens"][i, : len(ids)].tolist() == ids
        assert (arr["tokens"][i, len(ids):] == 0).all()  # right-padded with id 0
        assert arr["positions"][i] == len(ids) - 1
        assert arr["labels"][i] == tok.token_to_id("Ġ" + answers[i][1:])
        assert arr["distractors"][i] == tok.token_to_id("Ġ" + distractors[i][1:])
        assert tok.decode([int(arr["labels"][i])]) == answers[i]
        # IOI structure: the indirect object once in the prompt, the subject twice
        row = arr["tokens"][i].tolist()
        assert row.count(int(arr["labels"][i])) == 1 and row.count(int(arr["distractors"][i])) == 2
        # the corrupted prompt: same length and padding, differs exactly at the name positions,
        # where A -> C and B -> D consistently with C, D outside {A, B}
        c = arr["corrupted"][i]
        assert (c[len(ids):] == 0).all() and len(tok.encode(corrupted[i]).ids) == len(ids)
        a_id, b_id = int(arr["labels"][i]), int(arr["distractors"][i])
        names_at = {j for j, t in enumerate(row) if t in (a_id, b_id)}
        diff = set(np.nonzero(c != arr["tokens"][i])[0].tolist())
        assert diff == names_at
        c_of = {row[j]: int(c[j]) for j in names_at}
        assert len(c_of) == 2 and len(set(c_of.values())) == 2
        assert not set(c_of.values()) & {a_id, b_id}
        assert all(int(c[j]) == c_of[row[j]] for j in names_at)


def test_ioi_determinism_and_templates():
    a = ioi_prompts(NAMES, 40, seed=7)
    assert a == ioi_prompts(NAMES, 40, seed=7)
    assert a != ioi_prompts(NAMES, 40, seed=8)
    prompts, answers, distractors, corrupted = a
    assert all(len(x) == 40 for x in a)
    assert {p.split(" ")[0] for p in prompts} == {"When", "Then,"}  # several templates used
    for p, ans, dis, cor in zip(prompts, answers, distractors, corrupted):
        A, B = ans[1:], dis[1:]
        assert A != B and A in NAMES and B in NAMES
        assert p.count(" " + B) == 2 and p.count(" " + A) == 1
        assert A not in cor.split() and B not in cor.split()
    # both orders: ABB ("{A} and {B}") and BAB ("{B} and {A}")
    assert any(p.find(ans[1:]) < p.find(dis[1:]) for p, ans, dis in zip(prompts, answers, distractors))
    assert any(p.find(ans[1:]) > p.find(dis[1:]) for p, ans, dis in zip(prompts, answers, distractors))
    # own templates, and their validation (every bad template named at once)
    t = ["{B} met {A} and {B} waved at"]
    p2, a2, d2, c2 = ioi_prompts(NAMES, 5, seed=0, templates=t)
    assert all(p.endswith(" waved at") for p in p2)
    with pytest.raises(ValueError) as e:
        ioi_prompts(NAMES, 5, templates=["{A} only", "{A} {B} {C}", t[0]])
    msg = str(e.value)
    assert "2 problems" in msg and "'{A} only'" in msg and "'{A} {B} {C}'" in msg
    with pytest.raises(ValueError, match="at least 4 distinct names"):
        ioi_prompts(["Mary", "John", "Mary", "Bob"], 3)


def test_single_token_names(tok_path):
    # "Mary-Ann" is three tokens, "Zelda" unknown to the word-level vocabulary
    assert single_token_names(tok_path, ["Mary", "Mary-Ann", "Zelda", "John"]) == ["Mary", "John"]
    assert set(single_token_names(gpt2_like(DEFAULT_NAMES), DEFAULT_NAMES)) == set(DEFAULT_NAMES)


def test_errors_all_at_once(tok_path):
    prompts = ["When Mary and John went to the store, John gave a drink to",
               "",
               "When Alice and Bob went to the park, Bob gave a ball to",
               "When Tom and Anna went to the store, Anna gave a drink to"]
    answers = [" Mary", " Alice", " Alice", ""]
    distractors = [" John", " Bob", " Alice", " Anna"]
    corrupted = ["When Sarah and Paul went to the store, Paul gave a drink to",
                 "",
                 "When Sarah and Paul went to the park, Paul gave a ball to",
                 "When Sarah and Paul went to the store, Paul gave a drink"]
    with pytest.raises(ValueError) as e:
        encode_eval_set(tok_path, prompts, answers, distractors, corrupted)
    msg = str(e.value)
    assert msg.startswith("4 problems")
    assert "example 1: the prompt '' is empty" in msg
    assert "example 2: the answer ' Alice' and the distractor ' Alice' begin with the same token" in msg
    assert "example 3: the answer '' encodes to no tokens" in msg
    assert "example 3: the corrupted prompt has 13 tokens, the clean prompt 14" in msg
    assert "example 0" not in msg
    # at most 20 problems listed, the rest counted
    with pytest.raises(ValueError) as e:
        encode_eval_set(tok_path, ["x"] * 30, [""] * 30)
    lines = str(e.value).splitlines()
    assert lines[0] == "30 problems in the eval set:" and lines[-1].strip() == "... and 10 more"
    assert len(lines) == 22
    with pytest.raises(ValueError, match="3 prompts but 2 answers"):
        encode_eval_set(tok_path, ["a", "b", "c"], ["x", "y"])


def test_multi_token_answer_warns_once(tok_path):
    prompts = ["Then she said hello to"] * 3
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        arr = encode_eval_set(tok_path, prompts, [" Mary-Ann", " Mary - Ann", " Mary"])
    msgs = [str(x.message) for x in w]
    assert len(msgs) == 1 and msgs[0].startswith("2 answers/distractors encode to more than one token")
    assert "example 0: the answer ' Mary-Ann' is 3 tokens" in msgs[0]
    tok = Tokenizer.from_file(tok_path)
    assert arr["labels"].tolist() == [tok.token_to_id("ĠMary")] * 3
    assert "distractors" not in arr and "corrupted" not in arr


def test_pad_token_and_special_tokens(tmp_path):
    tok = gpt2_like(bos=True)
    prompts = ["The cat sat on the mat", "The cat sat"]
    arr = encode_eval_set(tok, prompts, [" .", " on"], pad_token="[UNK]", add_special_tokens=True)
    assert arr["tokens"][:, 0].tolist() == [2, 2]  # <s> first
    assert arr["positions"].tolist() == [6, 3]
    assert arr["tokens"][1, 4:].tolist() == [1, 1, 1]  # padded with the [UNK] id
    assert arr["labels"].tolist() == [tok.token_to_id("Ġ."), tok.token_to_id("Ġon")]
    arr0 = encode_eval_set(tok, prompts, [" .", " on"], pad_id=5)
    assert arr0["positions"].tolist() == [5, 2] and arr0["tokens"][1, 3:].tolist() == [5, 5, 5]
    with pytest.raises(ValueError, match="pad token '<pad>' is not in"):
        encode_eval_set(tok, prompts, [" .", " on"], pad_token="<pad>")
    # a tokenizer.json with padding enabled still encodes each prompt as it is
    tok.enable_padding(pad_id=1, pad_token="[UNK]", length=20)
    p = tmp_path / "padded.json"
    tok.save(str(p))
    assert encode_eval_set(str(p), prompts, [" .", " on"])["tokens"].shape == (2, 6)


def test_answer_in_context_sentencepiece_style():
    # Llama-2 style: "▁" prepended and spaces replaced, so " Mary" alone is "▁▁Mary" -> ["▁", "▁Mary"];
    # after a prompt it is "▁Mary", the token the model predicts
    vocab = {"[PAD]": 0, "[UNK]": 1, "▁": 2, "▁When": 3, "▁Mary": 4, "▁went": 5, "▁to": 6, "▁John": 7}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.pre_tokenizer = pre_tokenizers.Split("▁", behavior="merged_with_next")
    assert tok.encode(" Mary").ids == [2, 4]
    arr = encode_eval_set(tok, ["When John went to"], [" Mary"], [" John"])
    assert arr["tokens"].tolist() == [[3, 7, 5, 6]]
    assert arr["labels"].tolist() == [4] and arr["distractors"].tolist() == [7]


def test_save_roundtrip(tmp_path, tok_path):
    arr = encode_eval_set(tok_path, *ioi_prompts(NAMES, 6, seed=1))
    out = tmp_path / "sub" / "eval.safetensors"
    save_eval_set(arr, out)
    back = load_file(str(out))
    assert set(back) == set(arr)
    for k in arr:
        assert back[k].dtype == np.int64 and np.array_equal(back[k], arr[k])
    assert os.listdir(out.parent) == ["eval.safetensors"]
    with pytest.raises(ValueError, match="positions: shape"):
        save_eval_set({**arr, "positions": arr["positions"][:3]}, tmp_path / "x.safetensors")


def subprocess_cli(*args):
    env = dict(os.environ)
    env["PYTHONPATH"] = PY_ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "nshap_export.lm_data", *args], capture_output=True, text=True,
                          env=env, timeout=300)


@pytest.fixture
def cli(capsys):
    """main() in this process (an exception escaping it fails the test: no traceback for users)."""

    def run(*args):
        try:
            code = main(list(args))
        except SystemExit as e:  # argparse
            code = e.code
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out, err)

    return run


def test_cli_ioi(tmp_path, tok_path, cli):
    out = tmp_path / "eval.safetensors"
    names = ",".join(NAMES + ["Mary-Ann", "Zelda"])
    r = subprocess_cli("--tokenizer", tok_path, "--ioi", "--names", names, "--n", "16", "--seed", "4", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "dropped 2 name(s) that are not one token: Mary-Ann, Zelda" in r.stderr
    assert f"wrote {out}: 16 examples" in r.stdout
    back = load_file(str(out))
    want = encode_eval_set(tok_path, *ioi_prompts(NAMES, 16, seed=4))
    assert set(back) == set(want) and all(np.array_equal(back[k], want[k]) for k in want)
    # too few single-token names: exit 2, nothing written
    out2 = tmp_path / "none.safetensors"
    r = cli("--tokenizer", tok_path, "--ioi", "--names", "Mary,John,Zelda", "--out", str(out2))
    assert r.returncode == 2 and "at least 4 single-token names, have 2" in r.stderr
    assert "Traceback" not in r.stderr and not out2.exists()


def test_cli_jsonl(tmp_path, tok_path, cli):
    good = tmp_path / "good.jsonl"
    rows = [{"prompt": "When Mary and John went to the store, John gave a drink to", "answer": " Mary",
             "distractor": " John", "corrupted": "When Alice and Bob went to the store, Bob gave a drink to"},
            {"prompt": "Then she said hello to", "answer": " the", "distractor": " Mary",
             "corrupted": "Then she said hello and"}]
    good.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    out = tmp_path / "eval.safetensors"
    r = cli("--tokenizer", tok_path, "--prompts", str(good), "--out", str(out))
    assert r.returncode == 0, r.stderr
    back = load_file(str(out))
    assert back["tokens"].shape == back["corrupted"].shape == (2, 14)
    assert back["positions"].tolist() == [13, 4]
    # answer and prompt only
    plain = tmp_path / "plain.jsonl"
    plain.write_text(json.dumps({"prompt": "The cat sat on the", "answer": " mat"}) + "\n"
                     + json.dumps({"prompt": "The cat sat on the", "answer": " mat ."}) + "\n")
    r = cli("--tokenizer", tok_path, "--prompts", str(plain), "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "example 0: 'The cat sat on the' -> 'Ġmat'" in r.stdout
    assert ("nshap-lm-data: warning: 1 answer/distractor encodes to more than one token; the first token is "
            "used (e.g. line 2: the answer ' mat .' is 2 tokens)") in r.stderr
    assert set(load_file(str(out))) == {"tokens", "positions", "labels"}

    # two bad examples: both named by line, exit 2, no traceback, nothing written
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join([
        json.dumps(rows[0]),
        json.dumps({**rows[1], "corrupted": "Then she said hello"}),
        json.dumps({**rows[0], "distractor": " Mary"}),
    ]) + "\n")
    out3 = tmp_path / "bad.safetensors"
    r = subprocess_cli("--tokenizer", tok_path, "--prompts", str(bad), "--out", str(out3))
    assert r.returncode == 2, r.stderr
    assert "2 problems in the eval set" in r.stderr
    assert "line 2: the corrupted prompt has 4 tokens, the clean prompt 5" in r.stderr
    assert "line 3: the answer ' Mary' and the distractor ' Mary'" in r.stderr
    assert "Traceback" not in r.stderr and not out3.exists()

    # malformed lines: all reported
    worse = tmp_path / "worse.jsonl"
    worse.write_text('{"prompt": "a"}\nnot json\n{"prompt": "a", "answer": " b", "distracter": " c"}\n[1]\n'
                     '{"prompt": "The cat", "answer": " sat", "distractor": " on"}\n')
    r = cli("--tokenizer", tok_path, "--prompts", str(worse), "--out", str(out3))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    for s in ("line 1: missing 'answer'", "line 2: not JSON", "line 3: unknown key 'distracter'",
              "line 4: expected an object"):
        assert s in r.stderr, r.stderr


def test_cli_bad_tokenizer_and_args(tmp_path, cli):
    out = tmp_path / "o.safetensors"
    r = cli("--tokenizer", str(tmp_path / "missing.json"), "--ioi", "--out", str(out))
    assert r.returncode == 2 and "no such tokenizer file" in r.stderr and "Traceback" not in r.stderr
    junk = tmp_path / "junk.json"
    junk.write_text("{not a tokenizer")
    r = cli("--tokenizer", str(junk), "--ioi", "--out", str(out))
    assert r.returncode == 2 and "cannot read tokenizer" in r.stderr and "Traceback" not in r.stderr
    r = cli("--tokenizer", str(junk), "--out", str(out))  # neither --ioi nor --prompts
    assert r.returncode == 2 and "Traceback" not in r.stderr
    r = cli("--tokenizer", str(junk), "--prompts", "p.jsonl", "--names", "A,B", "--out", str(out))
    assert r.returncode == 2 and "--names and --template go with --ioi" in r.stderr
    assert not out.exists()


def test_answer_merging_with_prompt_warns(tok_path):
    # "mat" without its space joins the prompt's last word ("Ġthemat"): its own tokens are used
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        arr = encode_eval_set(tok_path, ["The cat sat on the"], ["mat"])
    assert [str(x.message) for x in w] == [
        "1 answer(s)/distractor(s) merge with the last token of their prompt; their own tokenization is used instead"]
    assert arr["labels"].tolist() == [Tokenizer.from_file(tok_path).encode("mat").ids[0]]
