"""Captions from CelebA attributes (facepaint.data.captions, SPEC section 2)."""

from __future__ import annotations

import gzip
import json
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from facepaint.data import captions
from facepaint.data.captions import CaptionConfig, build_captions, caption_candidates, eval_prompt
from facepaint.data.celebamask import ATTRIBUTE_FILE, ATTRIBUTES, read_attributes
from tests.helpers import config

REPO = Path(__file__).resolve().parents[2]
CFG = config("captions", CaptionConfig)

# What counts as "mentioning" each attribute. Deliberately broader than the module's vocabulary
# (e.g. "handsome" for Attractive, "sunglasses" is caught by "glasses"), so a new synonym that
# leaks an absent attribute is caught too.
MENTIONS = {
    "5_o_Clock_Shadow": r"\bstubble|o'clock",
    "Arched_Eyebrows": r"\barched\b",
    "Attractive": r"\b(attractive|beautiful|handsome|pretty|gorgeous|cute)\b",
    "Bags_Under_Eyes": r"\bbags\b|under-eye",
    "Bald": r"\bbald",
    "Bangs": r"\bbangs\b|\bfringe\b",
    "Big_Lips": r"\b(full|big|large|thick) lips\b",
    "Big_Nose": r"\b(big|large) (pointy |pointed )?nose\b",
    "Black_Hair": r"\bblack\b|\bdark-haired\b",
    "Blond_Hair": r"\bblond",
    "Blurry": r"\bblurry\b|\bblurred\b",
    "Brown_Hair": r"\bbrown\b|\bbrunette\b",
    "Bushy_Eyebrows": r"\b(bushy|thick)\b",
    "Chubby": r"\bchubby\b|\bfull cheeks\b|\bround face\b",
    "Double_Chin": r"\bdouble chin\b",
    "Eyeglasses": r"glasses|spectacles|bespectacled",
    "Goatee": r"\bgoatee\b",
    "Gray_Hair": r"\bgr[ae]y\b|\bgr[ae]y-haired\b|\bsilver",
    "Heavy_Makeup": r"\bmake-?up\b",
    "High_Cheekbones": r"\bcheekbones\b",
    "Mouth_Slightly_Open": r"\bmouth\b|\bparted\b|\bopen\b",
    "Mustache": r"\bmo?ustache\b",
    "Narrow_Eyes": r"\bnarrow\b",
    "Oval_Face": r"\boval\b",
    "Pale_Skin": r"\bpale\b",
    "Pointy_Nose": r"\bpoint(y|ed)\b",
    "Receding_Hairline": r"\breceding\b",
    "Rosy_Cheeks": r"\b(rosy|pink|red) cheeks\b",
    "Sideburns": r"\bsideburns\b",
    "Smiling": r"\bsmil",
    "Straight_Hair": r"\bstraight\b",
    "Wavy_Hair": r"\bwavy\b|\bcurly\b",
    "Wearing_Earrings": r"\bearrings?\b",
    "Wearing_Hat": r"\bhat\b|\bcap\b",
    "Wearing_Lipstick": r"\blipstick\b",
    "Wearing_Necklace": r"\bnecklace\b",
    "Wearing_Necktie": r"\b(neck)?tie\b",
    "Young": r"\b(young|youthful|youth)\b",
}
BEARD = re.compile(r"\bbeard(ed)?\b")
CLEAN_SHAVEN = re.compile(r"\bclean-shaven\b|\bshaven\b|\bshaved\b")
MALE_WORDS = re.compile(r"\b(man|men|guy|guys|gentleman|boy|male|he|his|him)\b")
FEMALE_WORDS = re.compile(r"\b(woman|women|lady|girl|female|she|her|hers)\b")
OLD_WORDS = re.compile(r"\b(old|older|elderly|aged|senior|middle-aged)\b")
MENTION_RE = {k: re.compile(v) for k, v in MENTIONS.items()}
# Attributes a caption designer would consider salient; SPEC-level prompts should carry them.
SALIENT = ("Eyeglasses", "Smiling", "Wearing_Hat", "Wearing_Earrings", "Wearing_Lipstick", "Heavy_Makeup", "Young")


def row(*present: str, male: bool | None = False, beard: bool = False) -> dict[str, int]:
    """All 40 attributes absent except `present`; No_Beard follows `beard` (it is inverted)."""
    unknown = [p for p in present if p not in ATTRIBUTES]
    assert not unknown, unknown
    r = {a: -1 for a in ATTRIBUTES}
    for p in present:
        r[p] = 1
    r["No_Beard"] = -1 if beard else 1
    if male is None:
        del r["Male"]
    else:
        r["Male"] = 1 if male else -1
    return r


def random_rows(count: int, seed: int = 0, p: float = 0.3) -> list[tuple[int, dict[str, int]]]:
    rng = random.Random(seed)
    out = []
    for k in range(count):
        r = {a: (1 if rng.random() < p else -1) for a in ATTRIBUTES}
        out.append((1000 + k, r))
    return out


def cands(attrs, image_id, n: int = 10, seed: int = 42) -> list[str]:
    """caption_candidates with the demo's n and seed unless a test picks others."""
    return caption_candidates(attrs, image_id, n=n, seed=seed)


def texts(attrs, image_id, **kw) -> list[str]:
    return cands(attrs, image_id, **kw) + [eval_prompt(attrs)]


# --- the real CLIP tokenizer, rebuilt from open_clip's bundled BPE merges ---------------------------


def _bytes_to_unicode() -> dict[int, str]:
    bs = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    extra = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + extra)
            extra += 1
    return dict(zip(bs, (chr(c) for c in cs)))


@pytest.fixture(scope="module")
def clip_tokenizer(tmp_path_factory):
    """openai/clip-vit-large-patch14's tokenizer (SD1.5's), written in the HF file layout.

    Local on purpose: facepaint.method.models will own the shared helper; this test must not depend on it.
    """
    import open_clip
    from transformers import CLIPTokenizer

    gz = Path(open_clip.__file__).with_name("bpe_simple_vocab_16e6.txt.gz")
    lines = gzip.open(gz).read().decode("utf-8").split("\n")
    merges = lines[1 : 49152 - 256 - 2 + 1]
    chars = list(_bytes_to_unicode().values())
    vocab = chars + [c + "</w>" for c in chars] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    d = tmp_path_factory.mktemp("clip_tokenizer")
    (d / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}), encoding="utf-8")
    (d / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    return CLIPTokenizer(str(d / "vocab.json"), str(d / "merges.txt"), model_max_length=77)


def test_the_tokenizer_is_clips(clip_tokenizer):
    """The well-known ids of openai CLIP prove the fixture is the real vocabulary, not a look-alike (so the
    length checks below count CLIP's tokens)."""
    assert len(clip_tokenizer) == 49408
    assert clip_tokenizer("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]


def assert_fits_clip(tok, caps: list[str]) -> None:
    lengths = [len(ids) for ids in tok(caps, truncation=False).input_ids]
    worst = max(range(len(caps)), key=lengths.__getitem__)
    assert lengths[worst] <= 77, (lengths[worst], caps[worst])


# --- truthfulness -------------------------------------------------------------------------------


def test_absent_attributes_are_never_mentioned():
    for image_id, r in random_rows(400, seed=1):
        for cap in texts(r, image_id):
            for attr, pattern in MENTION_RE.items():
                if r[attr] != 1 or attr == "Attractive":
                    assert not pattern.search(cap), (attr, r[attr], cap)
            if r["No_Beard"] == 1 or r["Male"] == -1:
                assert not BEARD.search(cap), cap
            if r["Young"] != 1:
                assert not OLD_WORDS.search(cap), cap


def test_a_sparse_row_mentions_nothing_but_the_subject():
    r = row("Eyeglasses", male=False)
    caps = texts(r, 7)
    assert sum(bool(re.search(r"glasses", c)) for c in caps) >= len(caps) // 2, caps
    for cap in caps:
        for attr, pattern in MENTION_RE.items():
            if attr != "Eyeglasses":
                assert not pattern.search(cap), (attr, cap)
        assert not BEARD.search(cap) and not CLEAN_SHAVEN.search(cap)


@pytest.mark.parametrize("attr", [a for a in ATTRIBUTES if a not in ("Attractive", "Male", "No_Beard")])
def test_every_present_attribute_is_mentioned_somewhere(attr):
    # Guards the negative tests against vacuous patterns: each pattern does match its attribute.
    male = attr in ("Mustache", "Goatee", "Sideburns", "5_o_Clock_Shadow")
    caps = cands(row(attr, male=male), 3)
    hits = [c for c in caps if MENTION_RE[attr].search(c)]
    assert hits, (attr, caps)


def test_attractive_is_never_used():
    r = row("Attractive", "Smiling", male=True)
    for cap in texts(r, 5):
        assert not MENTION_RE["Attractive"].search(cap), cap


@pytest.mark.parametrize("image_id", range(20))
def test_gender_words(image_id):
    woman = row("Smiling", "Young", "Wearing_Earrings", "Mouth_Slightly_Open", "Bags_Under_Eyes", male=False)
    man = row("Smiling", "Young", "Mustache", "Mouth_Slightly_Open", "Bags_Under_Eyes", male=True)
    for cap in texts(woman, image_id):
        assert not MALE_WORDS.search(cap), cap
        assert re.search(r"\b(woman|lady)\b", cap), cap
    for cap in texts(man, image_id):
        assert not FEMALE_WORDS.search(cap), cap
        assert re.search(r"\b(man|guy|gentleman)\b", cap), cap


def test_missing_gender_key_gives_a_neutral_subject():
    r = row("Smiling", "Bags_Under_Eyes", male=None)
    for cap in texts(r, 1):
        assert not MALE_WORDS.search(cap) and not FEMALE_WORDS.search(cap), cap
        assert re.search(r"\bperson\b", cap), cap


def test_gender_over_random_rows():
    for image_id, r in random_rows(300, seed=2, p=0.5):
        for cap in texts(r, image_id):
            if r["Male"] == 1:
                assert not FEMALE_WORDS.search(cap), cap
            else:
                assert not MALE_WORDS.search(cap), cap


def test_no_beard_is_inverted():
    bearded = row(male=True, beard=True)
    caps = cands(bearded, 11)
    assert sum(bool(BEARD.search(c)) for c in caps) >= len(caps) // 2, caps
    assert BEARD.search(eval_prompt(bearded))
    assert not any(CLEAN_SHAVEN.search(c) for c in caps)

    shaven = row("Smiling", male=True, beard=False)
    caps = cands(shaven, 11, n=30)
    assert not any(BEARD.search(c) for c in caps)
    # "clean-shaven" is allowed for such men, sometimes (never always: it is a minor attribute).
    n_clean = sum(bool(CLEAN_SHAVEN.search(c)) for c in caps)
    assert 0 < n_clean < len(caps)


@pytest.mark.parametrize("other", ["Mustache", "Goatee", "5_o_Clock_Shadow", "Sideburns"])
def test_clean_shaven_never_contradicts_other_facial_hair(other):
    caps = cands(row(other, male=True), 4, n=40)
    assert not any(CLEAN_SHAVEN.search(c) for c in caps)


def test_women_are_never_bearded_or_clean_shaven():
    # Facial-hair labels on Male=-1 rows are label noise in CelebA-HQ (~10 of ~19,000): omitted.
    noisy = row("Mustache", "Goatee", "Sideburns", "5_o_Clock_Shadow", male=False, beard=True)
    for cap in texts(noisy, 9):
        assert not BEARD.search(cap) and not CLEAN_SHAVEN.search(cap), cap
        for attr in ("Mustache", "Goatee", "Sideburns", "5_o_Clock_Shadow"):
            assert not MENTION_RE[attr].search(cap), cap
    for cap in cands(row(male=False), 9, n=40):
        assert not CLEAN_SHAVEN.search(cap), cap


def test_young_and_not_young():
    young = cands(row("Young", male=True), 1)
    assert sum(bool(MENTION_RE["Young"].search(c)) for c in young) >= 6, young
    for cap in texts(row("Gray_Hair", "Bags_Under_Eyes", male=True), 1):
        assert not MENTION_RE["Young"].search(cap) and not OLD_WORDS.search(cap), cap


def test_bald_people_get_no_hair_phrases():
    r = row("Bald", "Gray_Hair", "Black_Hair", "Wavy_Hair", "Bangs", "Receding_Hairline", male=True)
    caps = texts(r, 2)
    assert any(MENTION_RE["Bald"].search(c) for c in caps)
    for cap in caps:
        for attr in ("Gray_Hair", "Black_Hair", "Wavy_Hair", "Bangs", "Receding_Hairline"):
            assert not MENTION_RE[attr].search(cap), (attr, cap)
        assert not re.search(r"\bhair\b", cap), cap


def test_salient_attributes_are_in_most_candidates():
    r = row(
        "Eyeglasses",
        "Smiling",
        "Wearing_Hat",
        "Wearing_Earrings",
        "Wearing_Lipstick",
        "Young",
        "Blond_Hair",
        "Big_Nose",
        "Oval_Face",
        "Rosy_Cheeks",
        "Wearing_Necklace",
        "Narrow_Eyes",
        male=False,
    )
    for image_id in range(30):
        caps = cands(r, image_id)
        for attr in (
            "Eyeglasses",
            "Smiling",
            "Wearing_Hat",
            "Wearing_Earrings",
            "Wearing_Lipstick",
            "Young",
            "Blond_Hair",
        ):
            hits = sum(bool(MENTION_RE[attr].search(c)) for c in caps)
            assert hits >= 7, (attr, image_id, caps)
        for attr in ("Big_Nose", "Oval_Face", "Rosy_Cheeks", "Wearing_Necklace", "Narrow_Eyes"):
            hits = sum(bool(MENTION_RE[attr].search(c)) for c in caps)
            assert 1 <= hits <= 7, (attr, image_id, caps)


def test_eval_prompt_mentions_every_salient_attribute():
    woman = row(*SALIENT, "Wavy_Hair", "Brown_Hair", "Big_Nose", "Rosy_Cheeks", male=False)
    prompt = eval_prompt(woman)
    for attr in SALIENT + ("Wavy_Hair", "Brown_Hair"):
        assert MENTION_RE[attr].search(prompt), (attr, prompt)
    for attr in ("Big_Nose", "Rosy_Cheeks"):
        assert not MENTION_RE[attr].search(prompt)
    man = row("Mustache", "Goatee", "Black_Hair", "Eyeglasses", male=True, beard=True)
    prompt = eval_prompt(man)
    for attr in ("Mustache", "Goatee", "Black_Hair", "Eyeglasses"):
        assert MENTION_RE[attr].search(prompt), (attr, prompt)
    assert BEARD.search(prompt) and re.search(r"\bman\b", prompt)


def test_eval_prompt_is_canonical():
    # The template is part of the evaluation protocol: changing it changes every reported number.
    r = row("Smiling", "Young", "Wavy_Hair", "Blond_Hair", "Wearing_Earrings", "Wearing_Lipstick", male=False)
    assert eval_prompt(r) == "a photo of a smiling young woman with wavy blond hair, wearing earrings and lipstick"

    m = row("Eyeglasses", "Mustache", "Black_Hair", male=True)
    assert eval_prompt(m) == "a photo of a man with black hair and a mustache, wearing glasses"
    assert eval_prompt(row(male=False)) == "a photo of a woman"
    assert eval_prompt(row("Young", "Wearing_Hat", male=False)) == "a photo of a young woman wearing a hat"


# --- form ---------------------------------------------------------------------------------------


def test_count_and_distinct():
    rich = row("Smiling", "Young", "Brown_Hair", "Wavy_Hair", "Eyeglasses", "Big_Lips", "Oval_Face", male=False)
    for n in (1, 3, 10, 25):
        caps = cands(rich, 5, n=n)
        assert len(caps) == n and len(set(caps)) == n
    for image_id, r in random_rows(100, seed=3):
        caps = cands(r, image_id)
        assert len(caps) == 10 and len(set(caps)) == 10
    # A sparse row has only so many distinct captions: fewer than asked, but at least one.
    sparse = cands(row(male=False), 5, n=500)
    assert 1 <= len(sparse) < 500 and len(set(sparse)) == len(sparse)
    with pytest.raises(ValueError):
        cands(rich, 5, n=0)


def test_captions_are_clean_english():
    for image_id, r in random_rows(200, seed=4, p=0.4):
        for cap in texts(r, image_id):
            assert cap == cap.strip() and "  " not in cap and cap == cap.lower(), repr(cap)
            assert not re.search(r" [,.]|,,|, and,|\bwith with\b|\bwearing wearing\b|\band and\b", cap), cap
            assert not re.search(r"\ba [aeiou]|\ban [^aeiou\W]", cap), cap  # a/an agreement
            assert not cap.endswith((",", "with", "wearing", "and")), cap
            assert len(cap.split()) <= 60, cap


def test_openings_and_synonyms_vary():
    r = row("Smiling", "Young", "Black_Hair", "Eyeglasses", "Mustache", male=True)
    caps = [c for i in range(20) for c in cands(r, i)]
    openings = {c.split(" of ")[0] for c in caps if " of " in c}
    assert len(openings) >= 5, openings
    # ...and sometimes no opening at all ("a smiling man with ...").
    assert any(not re.search(r"\b(photo|portrait|headshot|picture|photograph|close-up)\b", c) for c in caps)
    for word in ("man", "guy", "gentleman"):
        assert any(re.search(rf"\b{word}\b", c) for c in caps), word
    assert any(re.search(r"\bwith\b", c) for c in caps) and any(re.search(r"\bwearing\b", c) for c in caps)
    # Comma-tag style ("a portrait of a man, black hair, glasses") is one of the shapes.
    assert any(c.count(",") >= 2 and not re.search(r"\bwith\b", c) for c in caps)
    assert any(c.startswith("a blurry") or "blurry" in c for c in cands(row("Blurry"), 1))


def test_fits_clip_window(clip_tokenizer):
    caps = []
    for image_id, r in random_rows(150, seed=5, p=0.5):
        caps += texts(r, image_id)
    for male in (True, False):
        everything = {a: 1 for a in ATTRIBUTES}
        everything["Male"] = 1 if male else -1
        everything["No_Beard"] = -1
        for image_id in range(20):
            caps += texts(everything, image_id, n=20)
    assert_fits_clip(clip_tokenizer, caps)


def test_length_guard_drops_features_not_the_subject(monkeypatch):
    # Real captions stay far below the guard (CLIP counts <= ~52); squeeze it to see it work.
    monkeypatch.setattr(captions, "_MAX_APPROX_TOKENS", 14)
    everything = {a: 1 for a in ATTRIBUTES}
    for cap in cands(everything, 1, n=20):
        assert captions._approx_tokens(cap) <= 14, cap
        assert re.search(r"\b(man|guy|gentleman)\b", cap), cap


# --- determinism --------------------------------------------------------------------------------


def test_deterministic_in_process():
    for image_id, r in random_rows(20, seed=6):
        assert cands(r, image_id) == cands(dict(r), image_id)
        assert cands(r, image_id, seed=3) == cands(r, image_id, seed=3)
    r = random_rows(1, seed=6)[0][1]
    series = pd.Series(r, dtype="int8")  # a table row works as the Mapping
    assert cands(series, 1000) == cands(r, 1000)


def test_seed_and_id_change_the_candidates():
    r = row("Smiling", "Young", "Brown_Hair", "Eyeglasses", "Big_Lips", "Wearing_Hat", male=False)
    base = cands(r, 1, seed=42)
    assert cands(r, 1, seed=43) != base
    assert cands(r, 2, seed=42) != base
    assert len({tuple(cands(r, i)) for i in range(20)}) == 20


_SUBPROCESS = """
import json, sys
from facepaint.data.captions import caption_candidates, eval_prompt
rows = json.loads(sys.stdin.read())
print(json.dumps([[caption_candidates(r, i, n=10, seed=s), eval_prompt(r)] for i, r, s in rows]))
"""


def test_deterministic_across_processes():
    rows = [(image_id, r, 42 + k % 3) for k, (image_id, r) in enumerate(random_rows(30, seed=7))]
    expected = [[cands(r, i, seed=s), eval_prompt(r)] for i, r, s in rows]
    outs = []
    for hashseed in ("0", "12345"):  # str hashing must not leak into the captions
        env = dict(os.environ, PYTHONHASHSEED=hashseed, PYTHONPATH=str(REPO))
        res = subprocess.run(
            [sys.executable, "-c", _SUBPROCESS],
            input=json.dumps(rows),
            env=env,
            capture_output=True,
            text=True,
            check=True,
            cwd=REPO,
        )
        outs.append(json.loads(res.stdout))
    assert outs[0] == expected and outs[1] == expected


def test_uses_only_random_random(monkeypatch):
    # choice/shuffle/sample/randint have changed algorithms across Python versions; the module must
    # build its own on Random.random() so captions stay identical everywhere.
    def forbidden(*a, **k):
        raise AssertionError("version-unstable random API used")

    for name in ("choice", "choices", "shuffle", "sample", "randint", "randrange", "uniform", "getrandbits"):
        monkeypatch.setattr(random.Random, name, forbidden)
    r = row("Smiling", "Young", "Black_Hair", "Wavy_Hair", "Eyeglasses", "Mustache", "Big_Nose", male=True, beard=True)
    assert len(cands(r, 1)) == 10
    monkeypatch.undo()


def test_private_choice_and_shuffle_are_uniform_enough():
    rng = random.Random("x")
    counts = [0] * 4
    for _ in range(4000):
        counts[captions._choice(rng, [0, 1, 2, 3])] += 1
    assert all(850 < c < 1150 for c in counts), counts
    firsts = [0] * 3
    for _ in range(3000):
        firsts[captions._shuffle(rng, [0, 1, 2])[0]] += 1
    assert all(850 < c < 1150 for c in firsts), firsts


# --- build_captions -----------------------------------------------------------------------------


def _table(rows):
    ids = [i for i, _ in rows]
    return pd.DataFrame(
        [[r[a] for a in ATTRIBUTES] for _, r in rows],
        index=pd.Index(ids, dtype="int64", name="id"),
        columns=list(ATTRIBUTES),
    ).astype("int8")


def test_build_captions_table(tmp_path):
    rows = random_rows(30, seed=8)
    table = _table(rows)
    chosen = [1029, 1003, 1017, 1000, 1011, 1022]  # unsorted, a subset
    splits = pd.Series(["train", "test", "test", "train", "train", "test"], index=pd.Index(chosen, name="id"))
    df = build_captions(table, splits, CaptionConfig(n_candidates=5, seed=1, fallback="a photo of a person"))
    assert list(df.columns) == ["id", "split", "candidates", "eval_prompt"]
    assert df["id"].dtype == "int64"
    assert df["id"].tolist() == sorted(chosen)
    for rec in df.itertuples():
        attrs = table.loc[rec.id]
        assert rec.split == splits[rec.id]
        assert rec.candidates == cands(attrs, rec.id, n=5, seed=1)
        assert isinstance(rec.candidates, list) and len(rec.candidates) == 5
        if rec.split == "test":
            assert rec.eval_prompt == eval_prompt(attrs)
        else:
            assert rec.eval_prompt is None

    path = tmp_path / "captions.parquet"
    df.to_parquet(path, index=False)
    back = pd.read_parquet(path)
    assert back["id"].tolist() == df["id"].tolist() and back["split"].tolist() == df["split"].tolist()
    assert [list(c) for c in back["candidates"]] == df["candidates"].tolist()
    assert [p if isinstance(p, str) else None for p in back["eval_prompt"]] == df["eval_prompt"].tolist()


def test_build_captions_rejects_bad_input():
    table = _table(random_rows(5, seed=9))
    with pytest.raises(KeyError, match="no attribute row"):
        build_captions(table, pd.Series(["train", "test"], index=[1000, 5]), CFG)
    with pytest.raises(ValueError, match="train"):
        build_captions(table, pd.Series(["train", "val"], index=[1000, 1001]), CFG)


@pytest.mark.slow
def test_build_captions_speed():
    rows = random_rows(30_000, seed=10, p=0.3)
    table = _table(rows)
    splits = pd.Series(["train", "train", "test"] * 10_000, index=table.index)
    t0 = time.perf_counter()
    df = build_captions(table, splits, CFG)
    elapsed = time.perf_counter() - t0
    assert len(df) == 30_000
    assert elapsed < 20, f"build_captions took {elapsed:.1f} s for 30,000 ids"


# --- the real fixture -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fixture_captions(fixture_root):
    table = read_attributes(fixture_root / ATTRIBUTE_FILE).table
    ids = sorted(int(x) for x in (fixture_root / "ids.txt").read_text().split())
    table = table.loc[ids]
    # Every id as "test" so that each gets an eval prompt to check as well.
    df = build_captions(table, pd.Series("test", index=pd.Index(ids, name="id")), CFG)
    return table, df.set_index("id")


def test_fixture_glasses(fixture_captions):
    # Rule: glasses are salient, so a wearer's eval prompt names them and so do at least half the
    # candidates (by construction ~8 of 10; half leaves room for de-duplication). Non-wearers never.
    table, df = fixture_captions
    wearers = table.index[table["Eyeglasses"] == 1]
    assert len(wearers) >= 5  # the check below is not vacuous
    glasses = MENTION_RE["Eyeglasses"]
    for i in table.index:
        cands, prompt = df.at[i, "candidates"], df.at[i, "eval_prompt"]
        hits = sum(bool(glasses.search(c)) for c in cands)
        if table.at[i, "Eyeglasses"] == 1:
            assert hits >= len(cands) / 2 and glasses.search(prompt), (i, cands, prompt)
        else:
            assert hits == 0 and not glasses.search(prompt), (i, cands, prompt)


def test_fixture_truthfulness(fixture_captions):
    table, df = fixture_captions
    man = re.compile(r"\b(man|men|guy|gentleman)\b")
    woman = re.compile(r"\b(woman|women|lady|girl)\b")
    assert (table["Male"] == 1).sum() > 10 and (table["Male"] == -1).sum() > 10
    assert (table["Smiling"] == 1).sum() > 10 and (table["Blond_Hair"] == 1).sum() > 5
    for i in table.index:
        a = table.loc[i]
        caps = df.at[i, "candidates"] + [df.at[i, "eval_prompt"]]
        for cap in caps:
            if a["Male"] == -1:
                assert not man.search(cap), (i, cap)
            else:
                assert not woman.search(cap), (i, cap)
            if a["Male"] == -1 and a["No_Beard"] == 1:
                assert not BEARD.search(cap), (i, cap)
            if a["Blond_Hair"] == -1:
                assert not re.search(r"blond", cap), (i, cap)
            for attr, pattern in MENTION_RE.items():
                if a[attr] != 1 or attr == "Attractive":
                    assert not pattern.search(cap), (i, attr, cap)
        if a["Smiling"] == 1:
            assert MENTION_RE["Smiling"].search(df.at[i, "eval_prompt"]), (i, df.at[i, "eval_prompt"])
        assert len(df.at[i, "candidates"]) == 10


def test_fixture_fits_clip(fixture_captions, clip_tokenizer):
    _, df = fixture_captions
    caps = [c for cs in df["candidates"] for c in cs] + df["eval_prompt"].tolist()
    assert_fits_clip(clip_tokenizer, caps)
