"""The torch-free caption tokenizer gives open_clip's token ids, bit for bit.

open_clip is imported here only (it imports torch); the tokenizer under test never does."""

from __future__ import annotations

import json
import pickle
import random
import subprocess
import sys

import numpy as np
import pytest

from caption_corpus import CAPTIONS, at_length
from fakedet.errors import BackendUnavailable, FakedetError, ManifestError, PackageError
from fakedet.runtime import caption_tokenizer as ct
from fakedet.runtime.caption_tokenizer import CaptionError, CaptionTokenizer

open_clip = pytest.importorskip("open_clip")
pytest.importorskip("tokenizers")
pytest.importorskip("ftfy")

NAMES = [name for name, _ in CAPTIONS]
TEXTS = [text for _, text in CAPTIONS]


@pytest.fixture(scope="module")
def tokenizer_json() -> str:
    return ct.build_clip_tokenizer_json(ct.open_clip_vocab_path())


@pytest.fixture(scope="module")
def tok(tokenizer_json) -> CaptionTokenizer:
    return CaptionTokenizer.from_json(tokenizer_json)


@pytest.fixture(scope="module")
def ref():
    reference = open_clip.get_tokenizer("ViT-B-32")
    assert type(reference).__name__ == "SimpleTokenizer" and reference.context_length == 77
    return reference


def reference_ids(ref, captions, context_length=None) -> np.ndarray:
    return ref(captions, context_length=context_length).numpy()


# ---------------------------------------------------------------- identity with open_clip

@pytest.mark.parametrize("name", NAMES)
def test_corpus_caption_matches_open_clip(tok, ref, name):
    caption = TEXTS[NAMES.index(name)]
    got = tok.encode([caption])
    assert got.dtype == np.int32 and got.shape == (1, 77)
    np.testing.assert_array_equal(got, reference_ids(ref, [caption]))


@pytest.mark.parametrize("context_length", [77, 16, 5, 2, 1])
def test_batch_matches_open_clip_tokenize_at_context_lengths(tokenizer_json, context_length):
    tok = CaptionTokenizer.from_json(tokenizer_json, context_length=context_length)
    got = tok.encode(TEXTS)
    assert got.shape == (len(TEXTS), context_length) and got.dtype == np.int32
    np.testing.assert_array_equal(got, open_clip.tokenize(TEXTS, context_length=context_length).numpy())


@pytest.mark.parametrize("n_words", [74, 75, 76, 77])
def test_captions_at_the_context_length(tok, ref, n_words):
    """75 one-token words fill 77 exactly (SOT + 75 + EOT); 76 and 77 are cut, EOT kept last."""
    caption = at_length(n_words)
    expected = reference_ids(ref, [caption])
    np.testing.assert_array_equal(tok.encode([caption]), expected)
    row = expected[0]
    assert row[0] == tok.sot_id
    if n_words >= 75:
        assert row[-1] == tok.eot_id and (row != 0).all()
    else:
        assert row[n_words + 1] == tok.eot_id and (row[n_words + 2:] == 0).all()


def test_vocabulary_and_special_ids_match_open_clip(tok, ref):
    assert tok._tokenizer.get_vocab() == ref.encoder
    assert (tok.sot_id, tok.eot_id) == (ref.sot_token_id, ref.eot_token_id) == (49406, 49407)
    assert tok.vocab_size == ref.vocab_size == 49408
    assert tok.context_length == 77


def test_bpe_matches_open_clip_on_vocabulary_words(tokenizer_json, ref):
    """BPE merge order: every 8th merged token of the vocabulary as a word, and random pairs of
    them glued together (words whose merges cross the pieces' boundary)."""
    byte_decoder = ref.byte_decoder
    words = []
    for token in list(ref.encoder)[512:-2:8]:
        raw = bytes(byte_decoder[c] for c in token.replace("</w>", ""))
        text = raw.decode("utf-8", errors="ignore")
        if text.strip():
            words.append(text)
    rng = random.Random(0)
    words += [rng.choice(words) + rng.choice(words) for _ in range(3000)]
    captions = [" ".join(words[i:i + 20]) for i in range(0, len(words), 20)]
    assert len(captions) > 400
    wide = CaptionTokenizer.from_json(tokenizer_json, context_length=128)
    np.testing.assert_array_equal(wide.encode(captions), reference_ids(ref, captions, context_length=128))


FUZZ_POOLS = ["abcdefghijklmnopqrstuvwxyz ", "etaoinshrdlu'’-.,!? ", "0123456789.,", "éèêëàâäôöûüçñß",
              "东京タワー서울", "😀👍🏽🇯🇵\u200d\ufe0f", "&;#<>amp", "ΑαΣσςΩ", "İıſK\u0345"]


def _random_caption(rng: random.Random) -> str:
    if rng.random() < 0.5:  # words from a few scripts, entities and apostrophes
        return "".join(rng.choice(rng.choice(FUZZ_POOLS) if rng.random() < 0.3 else FUZZ_POOLS[0])
                       for _ in range(rng.randint(0, 120)))
    return "".join(chr(rng.randrange(0x20, 0x30000)) if rng.random() < 0.5 else rng.choice("ab c")
                   for _ in range(rng.randint(0, 60)))  # lone surrogates included: ftfy replaces them


@pytest.mark.parametrize("n_captions", [pytest.param(2000, id="2k"), pytest.param(40000, id="40k", marks=pytest.mark.slow)])
def test_random_captions_match_open_clip(tokenizer_json, ref, n_captions):
    rng = random.Random(n_captions)
    captions = [_random_caption(rng) for _ in range(n_captions)]
    wide = CaptionTokenizer.from_json(tokenizer_json, context_length=200)
    for start in range(0, n_captions, 500):
        batch = captions[start:start + 500]
        np.testing.assert_array_equal(wide.encode(batch), reference_ids(ref, batch, context_length=200))


def _split_like_open_clip(tokenizer_json, ref, code_points, context: str) -> None:
    from tokenizers import Regex, pre_tokenizers

    split = json.loads(tokenizer_json)["pre_tokenizer"]["pretokenizers"][0]
    splitter = pre_tokenizers.Split(Regex(split["pattern"]["Regex"]), behavior="removed", invert=True)
    text = "".join(context.replace("C", chr(c)) for c in code_points if not 0xD800 <= c <= 0xDFFF)
    expected = ref.pat.findall(text)
    got = [word for word, _ in splitter.pre_tokenize_str(text)]
    assert len(got) == len(expected)
    assert got == expected


def test_word_split_matches_open_clip_on_planes_0_and_1(tokenizer_json, ref):
    """The JSON's word regex (run by Oniguruma inside tokenizers) splits exactly as open_clip's
    regex (the `regex` module, IGNORECASE) does, for every code point of the two planes where
    nearly all assigned characters live, next to a letter, a digit, punctuation, an apostrophe
    and itself. With Oniguruma's own \\p{L} and (?i), ~17k code points (Unicode 16/17 letters,
    U+0345) split differently; the explicit classes close that."""
    _split_like_open_clip(tokenizer_json, ref, range(0x20000), "aCa!C!1CC1'Ce ")


@pytest.mark.slow
@pytest.mark.parametrize("context", ["C ", "aCa ", "'Ce ", "!C! ", "1CC1 "])
def test_word_split_matches_open_clip_on_every_code_point(tokenizer_json, ref, context):
    _split_like_open_clip(tokenizer_json, ref, range(0x110000), context)


# ---------------------------------------------------------------- the file, the API, the errors

def test_saved_json_round_trips(tmp_path, tok, tokenizer_json):
    path = ct.write_clip_tokenizer(tmp_path / "tokenizer.json")
    assert path.read_text(encoding="utf-8") == tokenizer_json  # deterministic: hashable in a package
    loaded = CaptionTokenizer.from_file(path, context_length=77)
    np.testing.assert_array_equal(loaded.encode(TEXTS), tok.encode(TEXTS))
    assert str(path) in repr(loaded)


def test_open_clip_vocab_path_is_open_clips_own_file():
    from open_clip.tokenizer import default_bpe

    assert ct.open_clip_vocab_path().resolve() == type(ct.open_clip_vocab_path())(default_bpe()).resolve()


def test_missing_open_clip_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(ct.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(BackendUnavailable, match="open_clip is not installed"):
        ct.open_clip_vocab_path()


def test_empty_batch(tok):
    out = tok.encode([])
    assert out.shape == (0, 77) and out.dtype == np.int32


@pytest.mark.parametrize("bad", [None, 3, b"bytes caption", ["a list"]])
def test_a_caption_that_is_not_text_names_its_index(tok, bad):
    with pytest.raises(CaptionError, match=r"^caption 2: a caption must be text \(str\)") as err:
        tok.encode(["fine", "also fine", bad])
    assert err.value.index == 2 and isinstance(err.value, FakedetError)


@pytest.mark.parametrize("bad", ["one caption", b"bytes"])
def test_a_bare_string_is_not_a_batch(tok, bad):
    with pytest.raises(FakedetError, match="list of strings"):
        tok.encode(bad)


@pytest.mark.parametrize("length", [0, -1, True, 7.5, "77", None])
def test_bad_context_length(tokenizer_json, length):
    with pytest.raises(ManifestError, match="context length must be a positive integer"):
        CaptionTokenizer.from_json(tokenizer_json, context_length=length)


def _bpe_spec(**model_changes) -> dict:
    model = {"type": "BPE", "vocab": {"a": 0, ct.SOT: 1, ct.EOT: 2}, "merges": [],
             "end_of_word_suffix": "</w>"}
    model.update(model_changes)
    return {"version": "1.0", "model": model}


@pytest.mark.parametrize("content, problem", [
    (b"{not json", "not valid JSON"),
    (b"\xff\xfe\x00garbage", "not UTF-8"),
    (b"[1, 2, 3]", "not a JSON object"),
    (json.dumps({"model": {"type": "WordPiece", "vocab": {}}}).encode(), "no BPE model"),
    (json.dumps(_bpe_spec(vocab={"a": 0})).encode(), "lacks <start_of_text>, <end_of_text>"),
    (json.dumps(_bpe_spec(merges="a b")).encode(), "no vocab object or merges list"),
    (json.dumps(_bpe_spec(end_of_word_suffix=None)).encode(), "end-of-word suffix"),
    (json.dumps({**_bpe_spec(), "pre_tokenizer": {"type": "NoSuchThing"}}).encode(),
     "tokenizers cannot load"),
])
def test_a_bad_tokenizer_file_names_the_file(tmp_path, content, problem):
    path = tmp_path / "tokenizer.json"
    path.write_bytes(content)
    with pytest.raises(PackageError, match=problem) as err:
        CaptionTokenizer.from_file(path)
    assert err.value.path == str(path)


class _Trap:
    def __reduce__(self):
        return (exec, ("open('UNPICKLED', 'w').close()",))


def test_a_pickle_is_never_unpickled(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "tokenizer.json"
    path.write_bytes(pickle.dumps(_Trap()))
    with pytest.raises(PackageError, match="tokenizer.json"):
        CaptionTokenizer.from_file(path)
    assert not (tmp_path / "UNPICKLED").exists()


def test_unreadable_and_oversized_tokenizer_files(tmp_path, monkeypatch):
    with pytest.raises(PackageError, match="cannot read the tokenizer file") as err:
        CaptionTokenizer.from_file(tmp_path / "absent.json")
    assert "absent.json" in str(err.value)
    with pytest.raises(PackageError, match="cannot read the tokenizer file"):
        CaptionTokenizer.from_file(tmp_path)  # a directory
    big = tmp_path / "big.json"
    big.write_bytes(b" " * 2048)
    monkeypatch.setattr(ct, "MAX_FILE_BYTES", 1024)
    with pytest.raises(PackageError, match="larger than"):
        CaptionTokenizer.from_file(big)


def test_a_bad_vocabulary_file_names_the_file(tmp_path):
    import gzip

    not_gz = tmp_path / "vocab.txt.gz"
    not_gz.write_bytes(b"plain text")
    with pytest.raises(PackageError, match="cannot read the BPE vocabulary") as err:
        ct.build_clip_tokenizer_json(not_gz)
    assert str(not_gz) in str(err.value)
    short = tmp_path / "short.txt.gz"
    short.write_bytes(gzip.compress(b"#version\na b\n"))
    with pytest.raises(PackageError, match="has 2 merges"):
        ct.build_clip_tokenizer_json(short)
    lines = ["#version"] + ["a b"] * ct.N_MERGES
    lines[5] = "a b c"
    three = tmp_path / "three.txt.gz"
    three.write_bytes(gzip.compress("\n".join(lines).encode()))
    with pytest.raises(PackageError, match=r"line 6: a merge is two symbols"):
        ct.build_clip_tokenizer_json(three)


def test_missing_tokenizers_library_is_a_clear_error(tokenizer_json, monkeypatch):
    monkeypatch.setitem(sys.modules, "tokenizers", None)
    with pytest.raises(BackendUnavailable, match=r"'tokenizers' package: install the caption extra"):
        CaptionTokenizer.from_json(tokenizer_json)


def test_importing_the_runtime_imports_no_torch_and_no_tokenizers():
    code = ("import sys, fakedet.runtime, fakedet.runtime.caption_tokenizer\n"
            "heavy = {'torch', 'tokenizers', 'ftfy', 'open_clip', 'regex'} & set(sys.modules)\n"
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
