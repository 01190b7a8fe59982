"""The demo's customers: when they arrive, who they are (enterprise or individual, Chinese
or Western, where and in which currency) and how they will buy, pay, go quiet or leave.
``generate_customers`` returns the customers' row versions and the traits the other
generators build on."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from crm_pipeline import contract
from crm_pipeline.demo.dates import ACQUISITION_END, DAY, HOUR, MINUTE, NEVER, WORLD_START, day_us, whole_us
from crm_pipeline.demo.people import person_names
from crm_pipeline.demo.versions import change_columns, money, text_columns, us_col, versions
from crm_pipeline.demo.vocabulary import (ACCOUNT_MANAGERS, CITIES, COMPANY_WORDS, HONG_KONG_CITY, INDUSTRIES,
                                          LATIN_COMPANY_SUFFIXES, LATIN_COMPANY_WORDS, LATIN_MAIL_TLDS,
                                          PRODUCT_CATEGORIES)
from crm_pipeline.demo.world import World


@dataclass(frozen=True)
class CustomerTraits:
    """Per customer (arrays indexed by ``customer_id - 1``), what the contacts, orders,
    complaints and statements depend on. Times are µs; ``NEVER`` where it does not happen."""

    customer_id: np.ndarray
    created_at: np.ndarray
    enterprise: np.ndarray
    #: a Western name (the others are Chinese)
    latin: np.ndarray
    currency: np.ndarray
    #: never buys
    prospect: np.ndarray
    repeat_buyer: np.ndarray
    #: typical order value in CNY
    spend_scale: np.ndarray
    orders_per_year: np.ndarray
    first_order_at: np.ndarray
    churn_at: np.ndarray
    dormant_from: np.ndarray
    dormant_until: np.ndarray
    late_payer: np.ndarray
    bad_debtor: np.ndarray
    bad_debt_at: np.ndarray
    #: no order on or after this time (churn, or a month after going bad)
    stops_buying_at: np.ndarray
    #: from how many product categories they buy
    category_breadth: np.ndarray
    #: product category indexes per customer, favourite first
    category_preference: np.ndarray
    #: the two parts of an enterprise's mail domain ("" for individuals)
    mail_domain_parts: list[tuple[str, str]]


def generate_customers(world: World) -> tuple[pd.DataFrame, CustomerTraits]:
    """The customers' row versions and their traits."""
    rand, n = world.rand, world.n_customers
    idx = np.arange(n)
    launch = rand.uniform("c.launch", idx) < 0.04  # the customer base imported at go-live
    span = (ACQUISITION_END - WORLD_START).days + 1
    growth = 0.8  # acquisition grows linearly to 1.8x the initial pace
    span_share = (np.sqrt(1 + 2 * growth * (1 + growth / 2) * rand.uniform("c.created", idx)) - 1) / growth
    day = np.where(launch, 0, np.minimum((span_share * span).astype(np.int64), span - 1))
    time_of_day = np.where(launch, HOUR + rand.uniform("c.tod", idx) * 10 * HOUR,
                           30 * MINUTE + rand.uniform("c.tod", idx) * 13 * HOUR)
    created = day_us(WORLD_START) + day * DAY + whole_us(time_of_day)
    created = created[np.lexsort((idx, created))]
    cid = np.arange(1, n + 1)

    enterprise = rand.uniform("c.type", cid) < 0.40
    latin = rand.uniform("c.latin", cid) < np.where(enterprise, 0.20, 0.10)

    # where they are and what they pay in
    city = rand.choice([w for *_, w in CITIES], "c.city", cid)
    hong_kong = city == HONG_KONG_CITY
    latin_currency = np.array(["USD", "EUR", "HKD"])[rand.choice([5, 3.5, 1.5], "c.lcur", cid)]
    currency = np.where(latin, latin_currency, np.where(hong_kong, "HKD", "CNY"))
    region = np.array([r for _, _, r, _ in CITIES], dtype=object)[city]
    region = np.where(latin, np.where(currency == "HKD", "Hong Kong", "Overseas"), region)
    industry_i = rand.choice([w for *_, w in INDUSTRIES], "c.ind", cid)
    industry = np.where(enterprise, np.array([i[0] for i in INDUSTRIES], dtype=object)[industry_i], None)
    channel = np.array(contract.ACQUISITION_CHANNELS)[rand.choice([45, 35, 20], "c.chan", cid)]

    # buying behaviour
    archetype_u = rand.uniform("c.arche", cid)
    prospect = archetype_u < 0.05
    one_time = ~prospect & (archetype_u < np.where(enterprise, 0.05 + 0.15, 0.05 + 0.31))
    repeat = ~prospect & ~one_time
    z_value = rand.normal("c.val", cid)
    key_account = enterprise & repeat & (rand.uniform("c.key", cid) < 0.01)
    spend_scale = (np.where(enterprise, 4000.0, 1000.0) * np.exp(0.5 * z_value)
                   * np.where(key_account, 4.0, 1.0))
    rate = np.where(enterprise, 8.0, 3.5) * np.exp(0.55 * rand.normal("c.rate", cid) + 0.25 * z_value)
    rate = np.clip(rate * np.where(key_account, 1.5, 1.0), 0.5, 80.0)  # orders per year
    first_at = created + whole_us(10 * MINUTE + rand.exponential("c.first", cid) * 12 * DAY)
    bad = enterprise & repeat & ~key_account & (rand.uniform("c.bad", cid) < 0.03)  # ends in bad debt
    churned = repeat & (rand.uniform("c.churn", cid) < 0.30) & ~key_account & ~bad
    churn_at = np.where(churned, first_at + whole_us((30 + 420 * rand.exponential("c.churnt", cid)) * DAY), NEVER)
    dormant = repeat & (rand.uniform("c.dorm", cid) < 0.18)
    dormant_from = first_at + whole_us(rand.between(60, 700, "c.dorms", cid) * DAY)
    dormant_until = dormant_from + whole_us(rand.between(180, 365, "c.dorml", cid) * DAY)
    dormant_from = np.where(dormant, dormant_from, NEVER)
    dormant_until = np.where(dormant, dormant_until, NEVER)
    late_payer = rand.uniform("c.late", cid) < 0.15
    bad_at = np.where(bad, first_at + whole_us(rand.between(150, 900, "c.badt", cid) * DAY), NEVER)
    stop_at = np.minimum(churn_at, np.where(bad, bad_at + 30 * DAY, NEVER))
    breadth = 1 + rand.choice([30, 30, 20, 12, 8], "c.breadth", cid)
    category_preference = np.argsort(
        rand.uniform("c.cats", cid[:, None], np.arange(len(PRODUCT_CATEGORIES))[None, :]), axis=1)

    names, mail_domain_parts = _names(world, cid, enterprise, latin, currency, city, industry_i)

    # account management and credit
    manager = rand.below(len(ACCOUNT_MANAGERS), "c.am", cid)
    expected_quarter = spend_scale * rate / 4.0
    credit = np.where(enterprise, np.maximum(50_000, np.round(expected_quarter * rand.between(2, 4, "c.cl", cid), -4)),
                      np.nan)
    base = {
        "customer_id": cid,
        "name": names,
        "customer_type": np.where(enterprise, "enterprise", "individual"),
        "industry": industry,
        "region": region,
        "acquisition_channel": channel,
        "account_manager": np.array(ACCOUNT_MANAGERS, dtype=object)[manager],
        "credit_limit": credit * 100.0,  # cents
        "status": np.full(n, "active", dtype=object),
        "created_at": created,
        "updated_at": created,
        "is_deleted": np.zeros(n, dtype=np.float64),
    }
    events = []
    # account manager reassignments
    for step, (prob, low, high) in enumerate([(0.22, 90, 1000), (0.25, 60, 500)]):
        if step == 0:
            has = rand.uniform("c.amc", cid, step) < prob
            when = created + whole_us(rand.between(low, high, "c.amt", cid, step) * DAY)
        else:  # a second reassignment for a quarter of those
            has = has & (rand.uniform("c.amc", cid, step) < prob)
            when = when + whole_us(rand.between(low, high, "c.amt", cid, step) * DAY)
        manager = (manager + 1 + rand.below(len(ACCOUNT_MANAGERS) - 1, "c.amn", cid, step)) % len(ACCOUNT_MANAGERS)
        events.append({"customer_id": cid[has], "updated_at": when[has],
                       "account_manager": np.array(ACCOUNT_MANAGERS, dtype=object)[manager[has]]})
    # credit reviews
    review = enterprise & ~bad & (rand.uniform("c.clr", cid) < 0.30)
    factor = np.array([0.5, 1.5, 2.0])[rand.choice([2, 5, 3], "c.clf", cid)]
    when = created + whole_us(rand.between(120, 900, "c.clt", cid) * DAY)
    events.append({"customer_id": cid[review], "updated_at": when[review],
                   "credit_limit": (np.round(credit * factor, -4) * 100.0)[review]})
    # status: churned customers go inactive after a while, bad debtors get blocked
    when = churn_at + whole_us(rand.between(180, 365, "c.inact", cid) * DAY)
    events.append({"customer_id": cid[churned], "updated_at": when[churned],
                   "status": np.full(churned.sum(), "inactive", dtype=object)})
    lapsed = prospect & (rand.uniform("c.plapse", cid) < 0.5)
    when = created + whole_us(rand.between(365, 540, "c.plapset", cid) * DAY)
    events.append({"customer_id": cid[lapsed], "updated_at": when[lapsed],
                   "status": np.full(lapsed.sum(), "inactive", dtype=object)})
    when = np.where(bad, bad_at, 0) + whole_us(rand.between(60, 150, "c.block", cid) * DAY)
    events.append({"customer_id": cid[bad], "updated_at": when[bad],
                   "status": np.full(bad.sum(), "blocked", dtype=object),
                   "credit_limit": np.zeros(bad.sum())})
    df = versions("customer_id", base, events)
    table = pd.DataFrame({
        "customer_id": df["customer_id"].to_numpy(np.int64),
        **text_columns(df, "name", "customer_type", "industry", "region", "acquisition_channel", "account_manager",
                       "status"),
        "credit_limit": money(df["credit_limit"].to_numpy(np.float64, na_value=np.nan)),
        "created_at": us_col(df["created_at"]),
        **change_columns(df),
    })
    traits = CustomerTraits(
        customer_id=cid, created_at=created, enterprise=enterprise, latin=latin, currency=currency,
        prospect=prospect, repeat_buyer=repeat, spend_scale=spend_scale, orders_per_year=rate,
        first_order_at=first_at, churn_at=churn_at, dormant_from=dormant_from, dormant_until=dormant_until,
        late_payer=late_payer, bad_debtor=bad, bad_debt_at=bad_at, stops_buying_at=stop_at,
        category_breadth=breadth, category_preference=category_preference, mail_domain_parts=mail_domain_parts)
    return table, traits


def _names(world: World, cid: np.ndarray, enterprise: np.ndarray, latin: np.ndarray, currency: np.ndarray,
           city: np.ndarray, industry_i: np.ndarray) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """Customer names (a company's, or the person's for individuals) and the two parts of
    each enterprise's mail domain: (city pinyin, word pinyin) or (Western name, TLD)."""
    rand, n = world.rand, world.n_customers
    names = []
    mail_domain_parts: list[tuple[str, str]] = []
    word_i = rand.below(len(COMPANY_WORDS), "c.word", cid)
    latin_word_i = rand.below(len(LATIN_COMPANY_WORDS), "c.lword", cid)
    joint_stock = rand.uniform("c.form", cid) < 0.2
    suffix_i = rand.below(12, "c.lsuffix", cid)
    for i in range(n):
        if enterprise[i] and not latin[i]:
            place, word, industry = CITIES[city[i]], COMPANY_WORDS[word_i[i]], INDUSTRIES[industry_i[i]]
            names.append(f"{place[0]}{word[0]}{industry[1]}{'股份有限公司' if joint_stock[i] else '有限公司'}")
            mail_domain_parts.append((place[1], word[1]))
        elif enterprise[i]:
            suffixes = LATIN_COMPANY_SUFFIXES[currency[i]]
            word, noun = LATIN_COMPANY_WORDS[latin_word_i[i]], INDUSTRIES[industry_i[i]][2]
            names.append(f"{word} {noun} {suffixes[suffix_i[i] % len(suffixes)]}")
            mail_domain_parts.append((f"{word}{noun}".lower(), LATIN_MAIL_TLDS[currency[i]]))
        else:
            names.append("")
            mail_domain_parts.append(("", ""))
    person = person_names(rand, cid, np.zeros(n, dtype=np.int64), latin)
    names = np.where(enterprise, np.array(names, dtype=object), person[0])
    # the same company name twice in one CRM is a branch office
    dup_rank = pd.Series(names).groupby(names, sort=False).cumcount().to_numpy()
    branch = rand.below(len(CITIES) - 1, "c.branch", cid)
    for i in np.nonzero(enterprise & ~latin & (dup_rank > 0))[0]:
        names[i] = f"{names[i]}{CITIES[(branch[i] + dup_rank[i]) % (len(CITIES) - 1)][0]}分公司"
    for i in np.nonzero(enterprise & latin & (dup_rank > 0))[0]:
        branch_word = LATIN_COMPANY_WORDS[(latin_word_i[i] + dup_rank[i]) % len(LATIN_COMPANY_WORDS)]
        names[i] = f"{names[i]} ({branch_word} branch)"
    return names, mail_domain_parts
