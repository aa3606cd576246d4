"""The held-out split by concept family, shared by every emoji source.

A held-out prompt must never have been drawn in training: not in another style, not in another skin tone,
and not as another gender or hair variant of the same concept. So the split is decided per *family*, a
key computed from the code points alone, in which every such variant collapses to one key:

- skin-tone modifiers (U+1F3FB..U+1F3FF) and the presentation selector U+FE0F are dropped;
- in a ZWJ sequence, the joiner, the gender signs (U+2640, U+2642) and hair components (U+1F9B0..U+1F9B3)
  are dropped;
- man / woman / person (and boy / girl / child, old man / old woman / older person) become the neutral
  person: "man gesturing OK", "woman gesturing OK" and "person gesturing OK", in every tone,
  share the key "1F646"; "man: red hair" and "woman: bald" join "person" itself;
- gendered single code points with a neutral counterpart (prince, princess → person with crown; the
  three couples, kiss, couple with heart, family, pregnant man/woman, Santa/Mrs. Claus → their neutral
  sequences) are written as that counterpart first (`_SAME_CONCEPT`).

The split is then a hash of the family key with a fixed salt: the same in every run, set and version,
and independent of which other emoji exist. Flags, keycaps and objects are families of their own.
"""

from __future__ import annotations

import hashlib

TRAIN, HELD_OUT = "train", "held_out"
HELD_OUT_FRACTION = 0.1  # share of families held out
FAMILY_SALT = "t2i emoji family split v2"  # changing it reshuffles every held-out set: never change it

_VS16, _ZWJ = 0xFE0F, 0x200D
_TONES = range(0x1F3FB, 0x1F400)
_GENDER_SIGNS = {0x2640, 0x2642}
_HAIR = range(0x1F9B0, 0x1F9B4)
_PERSON, _CHILD, _OLDER = 0x1F9D1, 0x1F9D2, 0x1F9D3
_NEUTRAL = {  # gendered people stand for the neutral one
    0x1F468: _PERSON, 0x1F469: _PERSON,  # man, woman
    0x1F466: _CHILD, 0x1F467: _CHILD,  # boy, girl
    0x1F474: _OLDER, 0x1F475: _OLDER,  # old man, old woman
}
_SAME_CONCEPT = {  # gendered single code points, as their neutral sequence (ZWJ left out)
    (0x1F934,): (0x1FAC5,),  # prince -> person with crown
    (0x1F478,): (0x1FAC5,),  # princess
    (0x1F930,): (0x1FAC4,),  # pregnant woman -> pregnant person
    (0x1FAC3,): (0x1FAC4,),  # pregnant man
    (0x1F385,): (_PERSON, 0x1F384),  # Santa Claus -> mx claus
    (0x1F936,): (_PERSON, 0x1F384),  # Mrs. Claus
    (0x1F57A,): (0x1F483,),  # man dancing -> woman dancing (no neutral dancer exists)
    (0x1F46B,): (_PERSON, 0x1F91D, _PERSON),  # woman and man holding hands -> people holding hands
    (0x1F46C,): (_PERSON, 0x1F91D, _PERSON),  # men holding hands
    (0x1F46D,): (_PERSON, 0x1F91D, _PERSON),  # women holding hands
    (0x1F48F,): (_PERSON, 0x2764, 0x1F48B, _PERSON),  # kiss -> kiss: person, person
    (0x1F491,): (_PERSON, 0x2764, _PERSON),  # couple with heart
    (0x1F46A,): (_PERSON, _PERSON, _CHILD),  # family -> family: adult, adult, child
}


def family_key(codepoints: tuple[int, ...]) -> str:
    """The concept family of an emoji, as hex code points: "1F646" for every OK-gesturing person."""
    cps = tuple(cp for cp in codepoints if cp != _VS16 and cp not in _TONES)
    cps = _SAME_CONCEPT.get(cps, cps)
    if len(cps) > 1:  # a sequence: variants of the same concept differ only in these parts
        cps = tuple(cp for cp in cps if cp != _ZWJ and cp not in _GENDER_SIGNS and cp not in _HAIR) or cps
    cps = tuple(_NEUTRAL.get(cp, cp) for cp in cps)  # "man" and "woman" alone join "person"
    return " ".join(f"{cp:04X}" for cp in cps)


def family_split(codepoints: tuple[int, ...], held_out_fraction: float = HELD_OUT_FRACTION) -> str:
    """"held_out" for a fixed share of concept families (see the module docstring), else "train"."""
    digest = hashlib.sha256(f"{FAMILY_SALT}: {family_key(codepoints)}".encode()).digest()
    return HELD_OUT if int.from_bytes(digest[:8], "big") < held_out_fraction * 2**64 else TRAIN
