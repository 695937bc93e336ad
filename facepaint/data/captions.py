"""Captions from the 40 CelebA attributes (SPEC section 2).

Every image gets about ten caption *candidates* (training samples one per step) and, for test ids,
one designated *evaluation prompt*. Design choices:

Truthfulness first. A caption only ever mentions attributes labelled +1, and never says anything
a +1 label contradicts. Present attributes may be left out (captions are partial descriptions,
like real ones), absent ones are never mentioned. Concretely:
- Gender comes from `Male` and is always stated (man/guy/gentleman vs woman/lady). If the key is
  missing from the mapping the subject is a neutral "person".
- `Young=+1` may say young/youthful; `Young=-1` says nothing about age (no "old": CelebA's
  "not young" is a fuzzy label, and gray hair speaks for itself).
- `No_Beard` is inverted: -1 means a beard. "Clean-shaven" is said only of men with `No_Beard=+1`
  and no mustache, goatee, stubble or sideburns.
- Facial hair (beard, mustache, goatee, stubble, sideburns) is never put on a `Male=-1` person:
  in CelebA-HQ these labels are set on ~10 of ~19,000 women, i.e. label noise, and teaching the
  model "a woman with a beard" from noise is worse than leaving it out.
- Bald people get no hair colour, texture, bangs or receding-hairline phrase (about a third of
  the bald rows also carry a hair colour, which reads as a contradiction).
- `Attractive` is subjective and never used. Descriptions of the face (chubby, big nose, bags
  under the eyes...) are phrased neutrally ("full cheeks", "a large nose").

Salient vs minor. Hair colour, glasses, smile, facial hair, youth, baldness, hat, lipstick,
makeup and earrings are what a prompt for a face edit usually asks for, so each is mentioned in
about 4 of 5 candidates; every other attribute ("minor") in about 2 of 5, at most four of them per
candidate. The split is *stratified* rather than a coin flip per candidate: attribute `a` is
dropped from candidate `k` when `(k + offset_a) % 5` hits its drop slots, with a random offset per
image and attribute, dealt round-robin so that drops of different attributes fall on different
candidates. So with n=10 a salient attribute is in 8 of the first 10 attempts and a minor one in
4 (fewer only when more than ten minor attributes compete for the four slots): every present
attribute reaches the text encoder, and none is always there (which keeps the model usable with
short prompts at inference).

Variety. Candidates vary the opening ("a photo of", "a headshot of", none, "a blurry photo of"
for `Blurry`), synonyms, the sentence shape ("... with X, wearing Y", "... wearing Y, with X",
"... with X and Y", comma-separated tags), the order of the mentioned features and which
features are adjectives ("a smiling bearded man") or phrases ("a man with a beard, smiling").
Duplicates are discarded, so a sparse attribute row can yield fewer than n candidates.

Length. Each caption must fit CLIP's 77-token window (75 tokens between the start and end
markers). A conservative word+punctuation count is kept at or under 60 by dropping minor then
salient features; real CLIP BPE counts stay well under 77 (tested with the real tokenizer).

Determinism. The same (attributes, id, seed) must give the same captions on every machine and
Python version, forever, because captions are a cached pipeline artefact. `random.Random(str)`
seeding (SHA-512 of the string) and `Random.random()` (Mersenne Twister) are stable across
versions, but `choice`, `shuffle`, `sample`, `randint` and numpy's Generator methods have changed
their algorithms between releases. So only `.random()` is used, with choice/shuffle built on top.

The evaluation prompt is canonical instead of random: one fixed template ("a photo of a smiling
young woman with wavy blond hair, wearing earrings and lipstick") with every salient present
attribute, so prompts are comparable across images and methods.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

from facepaint.common.checks import MAX_SEED, check_fields, check_number

# Sentence shapes for candidates (weights): keep "with ..., wearing ..." the most common.
_STYLES = (("with_wear", 0.35), ("wear_with", 0.15), ("with_all", 0.25), ("tags", 0.25))
_OPENINGS = (
    "a photo of",
    "a photo of",
    "a portrait of",
    "a close-up photo of",
    "a headshot of",
    "close-up portrait of",
    "a picture of",
    "a photograph of",
    "portrait of",
    "photo of",
    "",
)
_BLURRY_OPENINGS = (
    "a blurry photo of",
    "a blurry portrait of",
    "a slightly blurry picture of",
    "a blurry close-up of",
)
_MAN = ("man", "man", "man", "guy", "gentleman")
_WOMAN = ("woman", "woman", "woman", "lady")
_PERSON = ("person",)

_SALIENT, _MINOR = 0, 1
_CYCLE = 5  # stratification period: salient dropped in 1 of 5 attempts, minor kept in 2 of 5
_MINOR_SLOTS = (0, 2)
_MAX_MINOR = 4  # per candidate, to keep captions readable and short
_MAX_ADJ = 3  # prenominal adjectives per candidate ("a smiling young bearded man")
_MAX_APPROX_TOKENS = 60  # of CLIP's 75; BPE splits a few words, so leave a margin
_ATTEMPTS_PER_CANDIDATE = 6

_TOKEN_RE = re.compile(r"\w+|[^\w\s]")


# --- stable randomness (only Random.random(); see module docstring) -------------------------------


def _rng(seed: int, image_id: int) -> random.Random:
    return random.Random(f"{int(seed)}:{int(image_id)}")


def _index(rng: random.Random, n: int) -> int:
    # min() guards the (theoretical) float rounding of random() * n up to n.
    return min(int(rng.random() * n), n - 1)


def _choice(rng: random.Random, seq: Sequence):
    return seq[_index(rng, len(seq))]


def _weighted(rng: random.Random, items: Sequence[tuple[object, float]]):
    total = sum(w for _, w in items)
    x = rng.random() * total
    for item, w in items:
        x -= w
        if x < 0:
            return item
    return items[-1][0]


def _shuffle(rng: random.Random, items: list) -> list:
    """Fisher-Yates in place, drawing only from rng.random()."""
    for i in range(len(items) - 1, 0, -1):
        j = _index(rng, i + 1)
        items[i], items[j] = items[j], items[i]
    return items


# --- features: what can be said about one image -----------------------------------------------


class _Feature:
    """One thing to say, with the ways it can be said.

    forms: "adj" (before the noun; ranked for English adjective order), "with" (noun phrase after
    "with"), "wear" (after "wearing"), "tail" (a trailing ", ..." phrase), "bare" (a tag in the
    comma-list style; defaults to the with/wear phrases).
    """

    __slots__ = ("key", "tier", "forms", "rank", "offset")

    def __init__(self, key: str, tier: int, forms: dict[str, tuple[str, ...]], rank: int = 0):
        self.key = key
        self.tier = tier
        self.forms = forms
        self.rank = rank
        self.offset = 0

    def bare(self) -> tuple[str, ...]:
        if "bare" in self.forms:
            return self.forms["bare"]
        # A tag list reads best as bare noun phrases ("glasses, earrings"); "wearing" only where
        # the phrase cannot stand alone.
        return self.forms.get("with") or tuple("wearing " + w for w in self.forms.get("wear", ()))


def _on(attrs: Mapping[str, int], name: str) -> bool:
    v = attrs.get(name)
    return v is not None and int(v) == 1


def _subject(attrs: Mapping[str, int]) -> tuple[str, tuple[str, ...], str]:
    """('man'|'woman'|'person', nouns, possessive)."""
    if "Male" not in attrs:
        return "person", _PERSON, "their"
    if _on(attrs, "Male"):
        return "man", _MAN, "his"
    return "woman", _WOMAN, "her"


def _hair_colour_words(attrs: Mapping[str, int]) -> list[tuple[str, ...]]:
    words = []
    if _on(attrs, "Black_Hair"):
        words.append(("black",))
    if _on(attrs, "Blond_Hair"):
        words.append(("blond", "blonde"))
    if _on(attrs, "Brown_Hair"):
        words.append(("brown",))
    if _on(attrs, "Gray_Hair"):
        words.append(("gray", "grey"))
    return words


def _hair_textures(attrs: Mapping[str, int]) -> list[str]:
    return [t for t, name in (("wavy", "Wavy_Hair"), ("straight", "Straight_Hair")) if _on(attrs, name)]


def _features(attrs: Mapping[str, int]) -> tuple[str, tuple[str, ...], str, list[_Feature], bool]:
    """Everything that may be said about this image, in a fixed order (the realisation's draws depend on it).
    Returns (gender, nouns, pos, features, blurry)."""
    gender, nouns, pos = _subject(attrs)
    man, woman = gender == "man", gender == "woman"
    features = [
        *_expression(attrs),
        *_hair(attrs, woman),
        *_wear(attrs),
        *_facial_hair(attrs, man, woman),
        *_details(attrs, pos),
    ]
    return gender, nouns, pos, features, _on(attrs, "Blurry")


def _expression(attrs: Mapping[str, int]) -> list[_Feature]:
    """Age and smile."""
    F: list[_Feature] = []
    add = F.append
    if _on(attrs, "Young"):
        add(_Feature("Young", _SALIENT, {"adj": ("young", "young", "youthful")}, rank=1))
    if _on(attrs, "Smiling"):
        add(
            _Feature(
                "Smiling",
                _SALIENT,
                {"adj": ("smiling",), "with": ("a smile",), "tail": ("smiling",), "bare": ("smiling",)},
                rank=0,
            )
        )
    return F


def _hair(attrs: Mapping[str, int], woman: bool) -> list[_Feature]:
    """Baldness, or the hair's colour, texture, bangs and hairline."""
    F: list[_Feature] = []
    add = F.append
    bald = _on(attrs, "Bald")
    if bald:
        add(_Feature("Bald", _SALIENT, {"adj": ("bald",), "with": ("a bald head",)}, rank=2))
    else:
        colours = _hair_colour_words(attrs)
        if colours:
            # One feature per image for all colours: "black and brown hair" when both are labelled.
            forms: dict[str, tuple[str, ...]] = {}
            phrases = []
            for pick in _product_first(colours):
                phrases.append(" and ".join(pick) + " hair")
            forms["with"] = tuple(phrases)
            if len(colours) == 1:
                c = colours[0][0]
                adj = [f"{c}-haired"]
                if c == "black":
                    adj.append("dark-haired")
                elif c == "blond":
                    adj.append("blonde" if woman else "blond")
                elif c == "brown" and woman:
                    adj.append("brunette")
                elif c == "gray":
                    adj += ["grey-haired", "silver-haired"]
                forms["adj"] = tuple(adj)
            add(_Feature("hair_colour", _SALIENT, forms, rank=2))
        textures = _hair_textures(attrs)
        if textures:
            # Merged into the colour phrase when both are mentioned (see _realize).
            add(_Feature("hair_texture", _MINOR, {"with": tuple(t + " hair" for t in textures)}))
        if _on(attrs, "Bangs"):
            add(_Feature("Bangs", _MINOR, {"with": ("bangs",)}))
        if _on(attrs, "Receding_Hairline"):
            add(_Feature("Receding_Hairline", _MINOR, {"with": ("a receding hairline",)}))
    return F


def _wear(attrs: Mapping[str, int]) -> list[_Feature]:
    """Glasses, hat, earrings, lipstick and makeup."""
    F: list[_Feature] = []
    add = F.append
    if _on(attrs, "Eyeglasses"):
        add(
            _Feature(
                "Eyeglasses",
                _SALIENT,
                {
                    "with": ("glasses", "eyeglasses"),
                    "wear": ("glasses", "eyeglasses"),
                    "bare": ("glasses", "eyeglasses", "wearing glasses"),
                },
            )
        )
    if _on(attrs, "Wearing_Hat"):
        add(_Feature("Wearing_Hat", _SALIENT, {"with": ("a hat",), "wear": ("a hat",)}))
    if _on(attrs, "Wearing_Earrings"):
        add(_Feature("Wearing_Earrings", _SALIENT, {"with": ("earrings",), "wear": ("earrings",)}))
    if _on(attrs, "Wearing_Lipstick"):
        add(_Feature("Wearing_Lipstick", _SALIENT, {"wear": ("lipstick",), "bare": ("lipstick", "wearing lipstick")}))
    if _on(attrs, "Heavy_Makeup"):
        add(
            _Feature(
                "Heavy_Makeup",
                _SALIENT,
                {"with": ("heavy makeup", "bold makeup"), "wear": ("heavy makeup", "a lot of makeup", "bold makeup")},
            )
        )
    return F


def _facial_hair(attrs: Mapping[str, int], man: bool, woman: bool) -> list[_Feature]:
    """Beard, mustache, goatee, stubble and sideburns, or clean-shaven (never for a woman)."""
    F: list[_Feature] = []
    add = F.append
    if not woman:
        beard = not _on(attrs, "No_Beard") and "No_Beard" in attrs
        if beard:
            add(_Feature("beard", _SALIENT, {"adj": ("bearded",), "with": ("a beard",)}, rank=3))
        if _on(attrs, "Mustache"):
            add(_Feature("Mustache", _SALIENT, {"with": ("a mustache", "a moustache")}))
        if _on(attrs, "Goatee"):
            add(_Feature("Goatee", _SALIENT, {"with": ("a goatee",)}))
        if _on(attrs, "5_o_Clock_Shadow"):
            add(
                _Feature("5_o_Clock_Shadow", _SALIENT, {"with": ("stubble", "light stubble", "a five o'clock shadow")})
            )
        if _on(attrs, "Sideburns"):
            add(_Feature("Sideburns", _MINOR, {"with": ("sideburns",)}))
        if (
            man
            and _on(attrs, "No_Beard")
            and not any(_on(attrs, a) for a in ("Mustache", "Goatee", "5_o_Clock_Shadow", "Sideburns"))
        ):
            add(_Feature("clean_shaven", _MINOR, {"adj": ("clean-shaven",)}, rank=3))
    return F


def _details(attrs: Mapping[str, int], pos: str) -> list[_Feature]:
    """The minor features: lips and mouth, nose, eyebrows, eyes, cheeks, skin, face shape, necklace, tie."""
    F: list[_Feature] = []
    add = F.append
    big_lips = _on(attrs, "Big_Lips")
    if big_lips:
        add(_Feature("Big_Lips", _MINOR, {"with": ("full lips", "big lips")}))
    if _on(attrs, "Mouth_Slightly_Open"):
        if big_lips:  # avoid "full lips and slightly parted lips"
            forms = {
                "tail": ("mouth slightly open", f"with {pos} mouth slightly open"),
                "bare": ("mouth slightly open",),
            }
        else:
            forms = {
                "with": ("slightly parted lips",),
                "tail": ("mouth slightly open", f"with {pos} mouth slightly open", "lips slightly parted"),
                "bare": ("mouth slightly open", "slightly parted lips"),
            }
        add(_Feature("Mouth_Slightly_Open", _MINOR, forms))

    nose = [
        w for w, name in ((("big", "large"), "Big_Nose"), (("pointy", "pointed"), "Pointy_Nose")) if _on(attrs, name)
    ]
    if nose:
        add(_Feature("nose", _MINOR, {"with": tuple("a " + " ".join(p) + " nose" for p in _product_first(nose))}))
    brows = [
        w for w, name in ((("bushy", "thick"), "Bushy_Eyebrows"), (("arched",), "Arched_Eyebrows")) if _on(attrs, name)
    ]
    if brows:
        phrases = tuple(" ".join(p) + " eyebrows" for p in _product_first(brows))
        add(_Feature("eyebrows", _MINOR, {"with": phrases + tuple(p.replace("eyebrows", "brows") for p in phrases)}))
    if _on(attrs, "Narrow_Eyes"):
        add(_Feature("Narrow_Eyes", _MINOR, {"with": ("narrow eyes",)}))
    if _on(attrs, "Bags_Under_Eyes"):
        add(_Feature("Bags_Under_Eyes", _MINOR, {"with": ("bags under the eyes", f"bags under {pos} eyes")}))
    if _on(attrs, "High_Cheekbones"):
        add(_Feature("High_Cheekbones", _MINOR, {"with": ("high cheekbones", "prominent cheekbones")}))
    if _on(attrs, "Rosy_Cheeks"):
        add(_Feature("Rosy_Cheeks", _MINOR, {"with": ("rosy cheeks", "pink cheeks")}))
    if _on(attrs, "Pale_Skin"):
        add(
            _Feature(
                "Pale_Skin",
                _MINOR,
                {"adj": ("pale", "pale-skinned"), "with": ("pale skin", "a pale complexion")},
                rank=1,
            )
        )
    oval = _on(attrs, "Oval_Face")
    if oval:
        add(_Feature("Oval_Face", _MINOR, {"with": ("an oval face",)}))
    if _on(attrs, "Chubby"):
        add(_Feature("Chubby", _MINOR, {"with": ("full cheeks",) if oval else ("full cheeks", "a round face")}))
    if _on(attrs, "Double_Chin"):
        add(_Feature("Double_Chin", _MINOR, {"with": ("a double chin",)}))
    if _on(attrs, "Wearing_Necklace"):
        add(_Feature("Wearing_Necklace", _MINOR, {"with": ("a necklace",), "wear": ("a necklace",)}))
    if _on(attrs, "Wearing_Necktie"):
        add(_Feature("Wearing_Necktie", _MINOR, {"with": ("a tie", "a necktie"), "wear": ("a tie", "a necktie")}))
    return F


def _product_first(options: list[tuple[str, ...]]) -> list[tuple[str, ...]]:
    """Small cartesian product of synonym tuples (at most a few combinations in practice)."""
    out: list[tuple[str, ...]] = [()]
    for opts in options:
        out = [p + (o,) for p in out for o in opts]
    return out


# --- assembling one candidate -----------------------------------------------------------------


def _join(rng: random.Random, items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    # The Oxford comma is a matter of taste; vary it.
    last_sep = ", and " if len(items) > 2 and rng.random() < 0.3 else " and "
    return ", ".join(items[:-1]) + last_sep + items[-1]


def _article(word: str) -> str:
    # Our vocabulary has no silent-h or "you"-sounding-u words, so the first letter decides.
    return "an" if word[:1] in "aeiou" else "a"


def _approx_tokens(text: str) -> int:
    return len(_TOKEN_RE.findall(text))


def _realize(rng: random.Random, nouns: tuple[str, ...], features: list[_Feature], blurry: bool) -> str:
    style = _weighted(rng, _STYLES)
    adjs: list[tuple[int, str]] = []
    withs: list[str] = []
    wears: list[str] = []
    tails: list[str] = []
    tags: list[str] = []

    by_key = {f.key: f for f in features}
    colour = by_key.get("hair_colour")
    texture = by_key.get("hair_texture")
    merged_hair = None
    if colour is not None and texture is not None:
        # "wavy blond hair" reads better than "blond hair and wavy hair".
        tex = _choice(rng, texture.forms["with"]).removesuffix(" hair")
        merged_hair = tex + " " + _choice(rng, colour.forms["with"])

    for f in features:
        if f is texture and merged_hair is not None:
            continue
        if f is colour and merged_hair is not None:
            (tags if style == "tags" else withs).append(merged_hair)
            continue
        forms = f.forms
        adj_only = "with" not in forms and "tail" not in forms
        # Adjective-only features ("young") always get their slot; the others take one if free.
        if "adj" in forms and (adj_only or (len(adjs) < _MAX_ADJ and rng.random() < 0.45)):
            adjs.append((f.rank, _choice(rng, forms["adj"])))
            continue
        if style == "tags":
            bare = f.bare()
            if bare:
                tags.append(_choice(rng, bare))
            continue
        kinds = [k for k in ("with", "wear", "tail") if k in forms]
        if style == "with_all" and "with" in kinds and "wear" in kinds:
            kinds.remove("wear")
        elif style != "with_all" and "wear" in kinds and "with" in kinds:
            kinds.remove("with")
        kind = _choice(rng, kinds)
        phrase = _choice(rng, forms[kind])
        (withs if kind == "with" else wears if kind == "wear" else tails).append(phrase)

    # Stable sort keeps the shuffle's order within a rank (adjective order is not free in English).
    adjs.sort(key=lambda a: a[0])
    noun = _choice(rng, nouns)
    head = " ".join([a for _, a in adjs] + [noun])
    subject = _article(head) + " " + head
    opening = _choice(rng, _BLURRY_OPENINGS if blurry else _OPENINGS)
    parts = [opening + " " + subject if opening else subject]

    # No shuffling here: `features` arrive in a random order already (see _hair_first).
    if style == "tags":
        text = ", ".join(parts + tags)
    else:
        with_clause = "with " + _join(rng, withs) if withs else ""
        wear_clause = "wearing " + _join(rng, wears) if wears else ""
        clauses = [
            c for c in ((wear_clause, with_clause) if style == "wear_with" else (with_clause, wear_clause)) if c
        ]
        text = parts[0]
        if clauses:
            text += " " + clauses[0]
            if len(clauses) > 1:
                text += ", " + clauses[1]
        for t in tails:
            text += ", " + t
    return text


def _hair_first(rng: random.Random, features: list[_Feature]) -> list[_Feature]:
    # Features are shuffled so the mention order varies; hair leads half the time because that is
    # how people usually describe a face.
    feats = _shuffle(rng, list(features))
    if rng.random() < 0.5:
        feats.sort(key=lambda f: 0 if f.key in ("hair_colour", "hair_texture") else 1)
    return feats


def caption_candidates(attrs: Mapping[str, int], image_id: int, *, n: int, seed: int) -> list[str]:
    """About `n` distinct captions for one image (exactly n unless fewer distinct ones exist).

    attrs maps attribute name -> +1 (present) / -1 (absent); a row of the attribute table works.
    Deterministic in (attrs, image_id, seed) on every platform and Python version.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    rng = _rng(seed, image_id)
    _, nouns, _, features, blurry = _features(attrs)
    # Offsets are dealt round-robin from a shuffled cycle, not drawn independently: then no two of
    # (up to five) salient features are dropped from the same candidate, and the number of minor
    # features per candidate stays even, instead of the occasional bare "a photo of a man".
    for tier in (_SALIENT, _MINOR):
        cycle = _shuffle(rng, list(range(_CYCLE)))
        for i, f in enumerate(f for f in features if f.tier == tier):
            f.offset = cycle[i % _CYCLE]
    has_blurry_offset = _index(rng, _CYCLE)

    out: list[str] = []
    seen: set[str] = set()
    for k in range(n * _ATTEMPTS_PER_CANDIDATE):
        if len(out) >= n:
            break
        salient = [f for f in features if f.tier == _SALIENT and (k + f.offset) % _CYCLE != 0]
        minor = [f for f in features if f.tier == _MINOR and (k + f.offset) % _CYCLE in _MINOR_SLOTS]
        if len(minor) > _MAX_MINOR:
            minor = _shuffle(rng, minor)[:_MAX_MINOR]
        say_blurry = blurry and (k + has_blurry_offset) % _CYCLE in _MINOR_SLOTS
        chosen = _hair_first(rng, salient + minor)
        text = _realize(rng, nouns, chosen, say_blurry)
        # Length guard: drop minor features first, then salient ones, until it surely fits.
        while _approx_tokens(text) > _MAX_APPROX_TOKENS and chosen:
            drop = next((f for f in reversed(chosen) if f.tier == _MINOR), chosen[-1])
            chosen = [f for f in chosen if f is not drop]
            text = _realize(rng, nouns, chosen, say_blurry)
        text = " ".join(text.split())
        if text not in seen:
            seen.add(text)
            out.append(text)
    return out


def eval_prompt(attrs: Mapping[str, int]) -> str:
    """The designated evaluation prompt for one image: every salient present attribute, one fixed
    template ("a photo of a smiling young woman with wavy blond hair, wearing earrings and
    lipstick"). Canonical on purpose: it depends on the attributes only.
    """
    gender, _, _, features, _ = _features(attrs)
    by_key = {f.key: f for f in features}
    adjs = []
    if "Smiling" in by_key:
        adjs.append("smiling")
    if "Young" in by_key:
        adjs.append("young")
    if "Bald" in by_key:
        adjs.append("bald")
    if "beard" in by_key:
        adjs.append("bearded")
    withs = []
    colours = [w[0] for w in _hair_colour_words(attrs)] if "hair_colour" in by_key else []
    textures = _hair_textures(attrs) if "hair_texture" in by_key else []
    texture = textures[0] if len(textures) == 1 else None  # both labelled: say neither
    hair_words = ([texture] if texture else []) + ([" and ".join(colours)] if colours else [])
    if hair_words:
        withs.append(" ".join(hair_words) + " hair")
    for key, phrase in (("Mustache", "a mustache"), ("Goatee", "a goatee"), ("5_o_Clock_Shadow", "stubble")):
        if key in by_key:
            withs.append(phrase)
    wears = []
    for key, phrase in (
        ("Eyeglasses", "glasses"),
        ("Wearing_Hat", "a hat"),
        ("Wearing_Earrings", "earrings"),
        ("Heavy_Makeup", "heavy makeup"),
        ("Wearing_Lipstick", "lipstick"),
    ):
        if key in by_key:
            wears.append(phrase)
    head = " ".join(adjs + [gender])
    text = f"a photo of {_article(head)} {head}"
    if withs:
        text += " with " + _plain_join(withs)
    if wears:
        text += (", wearing " if withs else " wearing ") + _plain_join(wears)
    return text


def _plain_join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


@dataclass
class CaptionConfig:  # params.yaml `captions`
    n_candidates: int  # caption candidates per image (SPEC: about 10)
    seed: int
    fallback: str  # a folder's photo without NAME.txt: this one caption (it invents no attribute)

    def __post_init__(self):
        check_fields(self, "captions")
        if not self.fallback.strip() or len(self.fallback) > 300:
            raise ValueError(f"captions.fallback must be a short caption, e.g. 'a photo of a person', got {self.fallback!r}")
        if self.n_candidates < 1:
            raise ValueError(f"captions.n_candidates must be at least 1, got {self.n_candidates}")
        check_number("captions.seed", self.seed, 0, MAX_SEED, whole=True)


def folder_captions(
    index: pd.DataFrame, splits: pd.Series, cfg: CaptionConfig, eval_prompts: list[str] | None = None
) -> pd.DataFrame:
    """The caption table of a folder's faces (facepaint.data.faces' index: its `captions` column, the lines of
    each photo's NAME.txt), as `build_captions` returns it. A face without captions gets `cfg.fallback`. A test
    face's evaluation prompt is the folder's evaluation prompts (`eval_prompts.txt`, one per line) in turn, or,
    without that file, its own first caption: the held-out caption the photo came with."""
    table = index.set_index("id").loc[splits.index]
    cands = [list(c) if len(c) else [cfg.fallback] for c in table["captions"]]
    split_values = splits.astype(str).to_numpy()
    prompts, k = [], 0
    for split, c in zip(split_values.tolist(), cands):
        if split != "test":
            prompts.append(None)
        elif eval_prompts:
            prompts.append(eval_prompts[k % len(eval_prompts)])
            k += 1
        else:
            prompts.append(c[0])
    return pd.DataFrame(
        {
            "id": pd.Series(splits.index.to_numpy(), dtype="int64"),
            "split": pd.Series(split_values, dtype=object),
            "candidates": pd.Series(cands, dtype=object),
            "eval_prompt": pd.Series(prompts, dtype=object),
        }
    )


def build_captions(attributes: pd.DataFrame, splits: pd.Series, cfg: CaptionConfig) -> pd.DataFrame:
    """Caption table for the ids in `splits` (a Series id -> "train"/"test").

    Returns columns id (int64), split (str), candidates (list of str), eval_prompt (str for test
    ids, None for train ids), sorted by id.
    """
    ids = pd.Index(splits.index).astype("int64")
    missing = ids.difference(attributes.index)
    if len(missing):
        raise KeyError(
            f"{len(missing)} id(s) in the split have no attribute row (first: {missing[:5].tolist()}); "
            f"the split and the attribute table must come from the same attribute file"
        )
    bad = sorted(set(splits.astype(str)) - {"train", "test"})
    if bad:
        raise ValueError(f"split values must be 'train' or 'test', found {bad[:5]}")
    order = ids.argsort()
    ids = ids[order]
    split_values = splits.astype(str).to_numpy()[order]
    # Plain dicts per row: ~20x faster than DataFrame.loc for 30,000 rows.
    columns = [str(c) for c in attributes.columns]
    values = attributes.loc[ids].to_numpy().tolist()
    cands, prompts = [], []
    for image_id, split, row in zip(ids.tolist(), split_values.tolist(), values):
        attrs = dict(zip(columns, row))
        cands.append(caption_candidates(attrs, image_id, n=cfg.n_candidates, seed=cfg.seed))
        prompts.append(eval_prompt(attrs) if split == "test" else None)
    return pd.DataFrame(
        {
            "id": pd.Series(ids.to_numpy(), dtype="int64"),
            "split": pd.Series(split_values, dtype=object),
            "candidates": pd.Series(cands, dtype=object),
            "eval_prompt": pd.Series(prompts, dtype=object),
        }
    )
