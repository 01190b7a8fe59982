"""The demo's contacts: the people at each customer with their CUTE role (coach, user,
technical, economic buyer), title, mail and phone; duplicates entered twice, incomplete
data, re-verification rounds that sometimes bring a new phone number, and deletions."""

from __future__ import annotations

import numpy as np
import pandas as pd

from crm_pipeline import contract
from crm_pipeline.demo.customers import CustomerTraits
from crm_pipeline.demo.dates import DAY, MINUTE, NEVER, WORLD_START, day_us, whole_us
from crm_pipeline.demo.people import person_names, phones
from crm_pipeline.demo.versions import change_columns, text_columns, ts_col, versions
from crm_pipeline.demo.vocabulary import PERSONAL_MAIL_DOMAINS, TITLES
from crm_pipeline.demo.world import World

#: re-verification events drawn per contact and round
_ROUND = 8


def generate_contacts(world: World, customers: CustomerTraits) -> pd.DataFrame:
    """The contacts' row versions."""
    rand, cid, enterprise = world.rand, customers.customer_id, customers.enterprise
    counts = np.where(enterprise, 1 + rand.choice([15, 25, 25, 17, 10, 8], "k.n", cid),
                      (rand.uniform("k.n1", cid) < 0.6).astype(np.int64))
    cc = np.repeat(cid, counts)  # each contact's customer
    pos = cc - 1  # that customer's position in the traits
    starts = np.cumsum(counts) - counts
    nth = np.arange(len(cc)) - np.repeat(starts, counts)  # the contact's index at its customer
    of_enterprise = enterprise[pos]

    is_dup = of_enterprise & (nth >= 1) & (rand.uniform("k.dup", cc, nth) < 0.07)
    dup_mail = is_dup & (rand.uniform("k.dupkind", cc, nth) < 0.6)  # else: same phone
    person = np.where(is_dup, 0, nth)  # the person a contact is
    # mostly the customer's own culture; an individual's contact is the person
    latin = np.where(of_enterprise & (rand.uniform("k.latin", cc, person) >= 0.9),
                     ~customers.latin[pos], customers.latin[pos])
    display, local = person_names(rand, cc, person, latin)
    currency = customers.currency[pos]
    phone = phones(rand, cc, person, np.zeros_like(nth), currency, latin)
    # mail addresses: company domain for enterprises, a personal mailbox otherwise
    mailbox_no = rand.below(900, "k.nn", cc, person) + 10
    mail_domain = rand.below(len(PERSONAL_MAIL_DOMAINS), "k.pm", cc, person)
    email = []
    for k in range(len(cc)):
        parts = customers.mail_domain_parts[pos[k]]
        if of_enterprise[k] and not customers.latin[pos[k]]:
            email.append(f"{local[k]}@{parts[0]}-{parts[1]}.com.cn")
        elif of_enterprise[k]:
            email.append(f"{local[k]}@{parts[0]}.{parts[1]}")
        else:
            email.append(f"{local[k].replace('.', '')}{mailbox_no[k]}@{PERSONAL_MAIL_DOMAINS[mail_domain[k]]}")
    email = np.array(email, dtype=object)
    # duplicates: the same person entered twice, by mail (other casing) or by phone
    for k in np.nonzero(dup_mail)[0]:
        mailbox, domain = email[k].split("@", 1)
        email[k] = ".".join(s.capitalize() for s in mailbox.split(".")) + "@" + domain.upper() \
            if rand.uniform("k.case", cc[k], nth[k])[0] < 0.5 else email[k].upper()
    new_phone = phones(rand, cc, nth, np.ones_like(nth), currency, latin)
    phone = np.where(dup_mail, new_phone, phone)
    private = is_dup & ~dup_mail
    email = np.where(private, np.array([f"{name.replace('.', '')}{no}@{PERSONAL_MAIL_DOMAINS[d]}"
                                        for name, no, d in zip(local, mailbox_no + 7, (mail_domain + 1) % 5)],
                                       dtype=object),
                     email)
    # incomplete contact data
    missing = rand.uniform("k.miss", cc, nth)
    email = np.where(~is_dup & (nth >= 1) & (missing < 0.04), None, email)
    phone = np.where(~is_dup & (nth >= 1) & (missing > 0.96), None, phone)

    # CUTE roles and titles
    roles = np.array(contract.CONTACT_ROLES)
    first_role = rand.choice([30, 35, 15, 20], "k.role0", cc)
    role_i = np.where(nth == 0, first_role, rand.choice([25, 25, 25, 25], "k.role", cc, nth))
    role_i = np.where(is_dup & (rand.uniform("k.duprole", cc, nth) < 0.5), first_role, role_i)
    role_i = np.where(of_enterprise, role_i, np.where(rand.uniform("k.irole", cc) < 0.7, 3, 1))
    role = roles[role_i]
    title_i = rand.below(3, "k.title", cc, nth)
    title = np.array([TITLES[r][1 if western else 0][t] for r, western, t in zip(role, latin, title_i)],
                     dtype=object)
    title = np.where(of_enterprise, title, None)

    # lifecycle
    customer_created = customers.created_at[pos]
    created = np.where(nth == 0, customer_created + whole_us(rand.between(1, 120, "k.t0", cc) * MINUTE),
                       customer_created + whole_us(rand.between(1, 800, "k.t", cc, nth) * DAY))
    go_live = created < day_us(WORLD_START) + DAY
    verified = np.where(go_live, created - whole_us(rand.between(0, 600, "k.legacy", cc, nth) * DAY), created)
    deleted = np.where(is_dup, rand.uniform("k.del", cc, nth) < 0.4, rand.uniform("k.del", cc, nth) < 0.03)
    deleted_at = created + whole_us(np.where(is_dup, rand.between(20, 400, "k.delt", cc, nth),
                                             rand.between(60, 900, "k.delt", cc, nth)) * DAY)
    deleted_at = np.where(deleted, deleted_at, NEVER)
    customer_stop = np.minimum(customers.churn_at[pos], customers.bad_debt_at[pos])
    customer_stop = np.where(customer_stop == NEVER, customer_stop, customer_stop + 90 * DAY)
    stop = np.minimum(deleted_at, customer_stop)
    maintained = rand.uniform("k.maint", cc, nth) < 0.55

    creation_order = np.lexsort((nth, cc, created))
    contact_id = np.empty(len(cc), dtype=np.int64)
    contact_id[creation_order] = np.arange(1, len(cc) + 1)

    # re-verification rounds (each a new version); some come with a new phone number
    event_id, event_at, event_phone = [], [], []
    horizon_end = world.horizon_end
    rows = np.nonzero(maintained & (created <= horizon_end))[0]
    last_at = created[rows].astype(np.float64)
    first_event = 0
    while len(rows):
        event_no = first_event + np.arange(_ROUND)
        gaps = rand.between(60, 300, "k.gap", cc[rows, None], nth[rows, None], event_no[None, :]) * DAY
        at = last_at[:, None] + np.cumsum(gaps, axis=1)
        happens = (at <= horizon_end) & (at < stop[rows, None])
        row_i, event_i = np.nonzero(happens)
        rr = rows[row_i]
        change = rand.uniform("k.newphone", cc[rr], nth[rr], event_no[event_i]) < 0.08
        renewed_phone = phones(rand, cc[rr], nth[rr], event_no[event_i] + 2, currency[rr], latin[rr])
        event_id.append(contact_id[rr])
        event_at.append(whole_us(at[row_i, event_i]))
        event_phone.append(np.where(change, renewed_phone, None))
        last_at = at[:, -1]
        alive = (last_at <= horizon_end) & (last_at < stop[rows])
        rows, last_at = rows[alive], last_at[alive]
        first_event += _ROUND
    base = {
        "contact_id": contact_id,
        "customer_id": cc,
        "name": display,
        "title": title,
        "email": email,
        "phone": phone,
        "role": role.astype(object),
        "last_verified_at": verified.astype(np.float64),
        "updated_at": created,
        "is_deleted": np.zeros(len(cc)),
    }
    verified_at = np.concatenate(event_at) if event_at else np.zeros(0, dtype=np.int64)
    events = [
        {"contact_id": np.concatenate(event_id) if event_id else np.zeros(0, dtype=np.int64),
         "updated_at": verified_at, "last_verified_at": verified_at.astype(np.float64),
         "phone": np.concatenate(event_phone) if event_phone else np.zeros(0, dtype=object)},
        {"contact_id": contact_id[deleted], "updated_at": deleted_at[deleted],
         "is_deleted": np.ones(deleted.sum())},
    ]
    df = versions("contact_id", base, events)
    return pd.DataFrame({
        "contact_id": df["contact_id"].to_numpy(np.int64),
        "customer_id": df["customer_id"].to_numpy(np.int64),
        **text_columns(df, "name", "title", "email", "phone", "role"),
        "last_verified_at": ts_col(df["last_verified_at"].to_numpy(np.float64)),
        **change_columns(df),
    })
