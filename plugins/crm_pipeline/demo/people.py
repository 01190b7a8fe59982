"""People in the demo world: display names and mail local parts (Chinese or Western),
and phone numbers in the format of the customer's country."""

from __future__ import annotations

import numpy as np

from crm_pipeline.demo.randomness import KeyedRandom
from crm_pipeline.demo.vocabulary import (GIVEN_NAMES, LATIN_FIRST_NAMES, LATIN_LAST_NAMES, MOBILE_PREFIXES,
                                          SURNAMES)


def person_names(rand: KeyedRandom, customer: np.ndarray, person: np.ndarray,
                 latin: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Person names per (customer, person index): the display name and a mail local part."""
    surname = rand.below(len(SURNAMES), "p.sur", customer, person)
    given1 = rand.below(len(GIVEN_NAMES), "p.g1", customer, person)
    given2 = rand.below(len(GIVEN_NAMES), "p.g2", customer, person)
    two = rand.uniform("p.two", customer, person) < 0.6
    first = rand.below(len(LATIN_FIRST_NAMES), "p.first", customer, person)
    last = rand.below(len(LATIN_LAST_NAMES), "p.last", customer, person)
    display, local = [], []
    for k in range(len(customer)):
        if latin[k]:
            display.append(f"{LATIN_FIRST_NAMES[first[k]]} {LATIN_LAST_NAMES[last[k]]}")
            local.append(f"{LATIN_FIRST_NAMES[first[k]]}.{LATIN_LAST_NAMES[last[k]]}".lower())
        else:
            given = GIVEN_NAMES[given1[k]][0] + (GIVEN_NAMES[given2[k]][0] if two[k] else "")
            given_pinyin = GIVEN_NAMES[given1[k]][1] + (GIVEN_NAMES[given2[k]][1] if two[k] else "")
            display.append(SURNAMES[surname[k]][0] + given)
            local.append(f"{given_pinyin}.{SURNAMES[surname[k]][1]}")
    return np.array(display, dtype=object), np.array(local, dtype=object)


def phones(rand: KeyedRandom, customer: np.ndarray, key2: np.ndarray, key3: np.ndarray, currency: np.ndarray,
           latin: np.ndarray) -> np.ndarray:
    """A phone number per (customer, key2, key3): a Chinese mobile number for Chinese
    names and CNY customers, else one of the customer's currency's country."""
    digits = (rand.bits("p.phone", customer, key2, key3) % np.uint64(10**8)).astype(np.int64)
    prefix = rand.below(len(MOBILE_PREFIXES), "p.pre", customer, key2, key3)
    out = []
    for k in range(len(customer)):
        d = digits[k]
        if not latin[k] or currency[k] == "CNY":
            out.append(f"+86 {MOBILE_PREFIXES[prefix[k]]} {d // 10000 % 10000:04d} {d % 10000:04d}")
        elif currency[k] == "HKD":
            out.append(f"+852 {5000 + d // 10000 % 5000:04d} {d % 10000:04d}")
        elif currency[k] == "EUR":
            out.append(f"+49 30 {d % 10**7:07d}")
        else:
            out.append(f"+1 {[212, 415, 312, 617, 206][prefix[k] % 5]} 555 {d % 10000:04d}")
    return np.array(out, dtype=object)
