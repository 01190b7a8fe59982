"""The demo operational source: a deterministic OLTP database that evolves day by day.

This module owns the embedded demo source. :func:`generate_world` computes every row
version of the five contract entities (customers, contacts, orders, complaints,
financial statements) from ``(customers, seed)`` up to a horizon date, and
:func:`advance_source` brings a real database (SQLite, PostgreSQL, MySQL/MariaDB) to
its state at the end of a given day, upserting only the rows that changed since the
last call, the way a production system changes rows in place.

Why it is built the way it is:

* Every random number is a pure function of ``(seed, stream name, entity keys,
  event index)``: a counter-based hash (SplitMix64) instead of a stateful generator.
  A customer's 17th candidate order has the same time and amount whatever the horizon,
  so extending the horizon only appends versions, and a source advanced in many small
  steps ends byte-identical to one advanced in one step. Nothing reads the wall clock
  or Python's randomised ``hash``.
* Processes without a natural end (repeat orders, contact re-verification, quarterly
  filings) are generated in fixed-size rounds of events until they pass the horizon;
  rows get their ids by sorting on creation time, so ids of rows created before the
  horizon never depend on it.
* The data is *good* data that exercises the business rules of ``domain.md``: heavy
  tailed spend, one-time buyers, prospects, seasonality (Q4 peak, Double 11, Chinese New
  Year dip), dormant and churned customers, late payers and bad debts, complaint bursts,
  CUTE contact roles with stale and duplicate contacts, quarterly statements for most
  enterprises. Bad-data cases are produced by tests elsewhere.

Conventions: timestamps are naive UTC; money is in the row's own currency for orders
(``currency``) and in the reporting currency (CNY) for credit limits, complaint
compensation and financial statements. Complaint severity 1 is minor, 4 is critical.
Complaint ``resolved_at`` is set exactly while the status is ``resolved``.
"""

from __future__ import annotations

import datetime as dt
import io
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import pandas as pd
import sqlalchemy as sa
from scipy.special import ndtri
from sqlalchemy.dialects import mysql as sa_mysql

from crm_pipeline import contract as c

__all__ = [
    "ACQUISITION_END",
    "AdvanceResult",
    "GENERATOR_VERSION",
    "STATE_TABLE",
    "WORLD_START",
    "advance_source",
    "generate_world",
]

#: The first day of the demo world: the go-live of the CRM (first customers created).
WORLD_START = dt.date(2023, 7, 1)
#: The last day a new customer is acquired; orders go on for as long as asked.
ACQUISITION_END = dt.date(2026, 9, 30)
#: Bumped whenever the generated data changes, so that an existing source is never
#: advanced with a different algorithm than the one that filled it.
GENERATOR_VERSION = "1"
STATE_TABLE = "_demo_state"

_SEC = 1_000_000
_MIN = 60 * _SEC
_HOUR = 60 * _MIN
_DAY = 24 * _HOUR
_YEAR = 365.25 * _DAY
_EPOCH = dt.date(1970, 1, 1)
_NULL_TS = np.iinfo(np.int64).min  # numpy's NaT: an int64 µs array views as datetime64
_RESET = -1.0  # in version events: "set this column to NULL"

#: approximate CNY per unit, only to give foreign-currency orders plausible magnitudes
_FX_TO_CNY = {"CNY": 1.0, "USD": 7.2, "EUR": 7.8, "HKD": 0.92}


# --------------------------------------------------------------------------------------
# counter-based randomness
# --------------------------------------------------------------------------------------

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser (wrapping uint64 arithmetic)."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


class _Rand:
    """Random numbers as pure functions of (seed, stream, keys...)."""

    def __init__(self, seed: int) -> None:
        self._seed = np.array([seed & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64)

    def bits(self, stream: str, *keys: Any) -> np.ndarray:
        with np.errstate(over="ignore"):
            h = _mix64(self._seed ^ np.uint64(zlib.crc32(stream.encode())))
            for k in keys:
                k = np.asarray(k, dtype=np.int64).view(np.uint64)
                h = _mix64(h + (k + np.uint64(1)) * _GOLDEN)
        return h

    def u(self, stream: str, *keys: Any) -> np.ndarray:
        """Uniform in the open interval (0, 1)."""
        return ((self.bits(stream, *keys) >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53

    def between(self, lo: float, hi: float, stream: str, *keys: Any) -> np.ndarray:
        return lo + (hi - lo) * self.u(stream, *keys)

    def normal(self, stream: str, *keys: Any) -> np.ndarray:
        return ndtri(self.u(stream, *keys))

    def exp(self, stream: str, *keys: Any) -> np.ndarray:
        return -np.log(self.u(stream, *keys))

    def choice(self, weights: Iterable[float], stream: str, *keys: Any) -> np.ndarray:
        w = np.asarray(list(weights), dtype=np.float64)
        cum = np.cumsum(w) / w.sum()
        cum[-1] = 1.0
        return np.searchsorted(cum, self.u(stream, *keys), side="right").astype(np.int64)

    def intbelow(self, n: int, stream: str, *keys: Any) -> np.ndarray:
        return (self.bits(stream, *keys) % np.uint64(n)).astype(np.int64)


# --------------------------------------------------------------------------------------
# pools of names and categories
# --------------------------------------------------------------------------------------

_SURNAMES = [("张", "zhang"), ("王", "wang"), ("李", "li"), ("刘", "liu"), ("陈", "chen"),
             ("杨", "yang"), ("黄", "huang"), ("赵", "zhao"), ("吴", "wu"), ("周", "zhou"),
             ("徐", "xu"), ("孙", "sun"), ("马", "ma"), ("朱", "zhu"), ("胡", "hu"),
             ("郭", "guo"), ("何", "he"), ("林", "lin"), ("高", "gao"), ("罗", "luo"),
             ("郑", "zheng"), ("梁", "liang"), ("谢", "xie"), ("宋", "song")]
_GIVEN = [("伟", "wei"), ("芳", "fang"), ("娜", "na"), ("敏", "min"), ("静", "jing"),
          ("丽", "li"), ("强", "qiang"), ("磊", "lei"), ("军", "jun"), ("洋", "yang"),
          ("勇", "yong"), ("艳", "yan"), ("杰", "jie"), ("娟", "juan"), ("涛", "tao"),
          ("明", "ming"), ("超", "chao"), ("秀", "xiu"), ("霞", "xia"), ("平", "ping"),
          ("刚", "gang"), ("桂", "gui"), ("英", "ying"), ("华", "hua"), ("文", "wen"),
          ("辉", "hui"), ("建", "jian"), ("鑫", "xin"), ("宇", "yu"), ("婷", "ting"),
          ("浩", "hao"), ("晨", "chen"), ("欣", "xin"), ("雪", "xue"), ("博", "bo"),
          ("佳", "jia"), ("子", "zi"), ("思", "si"), ("颖", "ying"), ("琳", "lin")]
_FIRST = ["Emma", "Liam", "Olivia", "Noah", "Sophia", "Lucas", "Mia", "Leon", "Anna",
          "David", "Laura", "Thomas", "Sarah", "Daniel", "Julia", "Michael", "Chloe",
          "Marco", "Elena", "Peter", "Hannah", "James", "Claire", "Felix", "Nina",
          "Oliver", "Grace", "Samuel", "Lena", "Victor"]
_LAST = ["Smith", "Johnson", "Brown", "Miller", "Davis", "Wilson", "Taylor", "Schmidt",
         "Weber", "Fischer", "Martin", "Bernard", "Dubois", "Rossi", "Bianchi", "Garcia",
         "Lopez", "Novak", "Jansen", "Chan", "Wong", "Lee", "Cheung", "Ho", "Murphy",
         "Keller", "Moreau", "Visser", "Kowalski", "Larsen"]

# city, pinyin, region, weight
_CITIES = [("北京", "beijing", "North", 10), ("天津", "tianjin", "North", 3),
           ("石家庄", "shijiazhuang", "North", 1), ("上海", "shanghai", "East", 10),
           ("杭州", "hangzhou", "East", 5), ("南京", "nanjing", "East", 4),
           ("苏州", "suzhou", "East", 4), ("宁波", "ningbo", "East", 2),
           ("合肥", "hefei", "East", 2), ("青岛", "qingdao", "East", 2),
           ("厦门", "xiamen", "East", 2), ("济南", "jinan", "East", 2),
           ("深圳", "shenzhen", "South", 8), ("广州", "guangzhou", "South", 7),
           ("东莞", "dongguan", "South", 3), ("武汉", "wuhan", "Central", 4),
           ("长沙", "changsha", "Central", 2), ("郑州", "zhengzhou", "Central", 2),
           ("成都", "chengdu", "Southwest", 5), ("重庆", "chongqing", "Southwest", 3),
           ("昆明", "kunming", "Southwest", 1), ("西安", "xian", "Northwest", 3),
           ("兰州", "lanzhou", "Northwest", 1), ("沈阳", "shenyang", "Northeast", 2),
           ("大连", "dalian", "Northeast", 2), ("哈尔滨", "haerbin", "Northeast", 1),
           ("香港", "hongkong", "Hong Kong", 3)]
_HK_CITY = len(_CITIES) - 1
_WORDS = [("星辰", "xingchen"), ("华信", "huaxin"), ("宏达", "hongda"), ("瑞丰", "ruifeng"),
          ("恒通", "hengtong"), ("博远", "boyuan"), ("嘉禾", "jiahe"), ("天成", "tiancheng"),
          ("中联", "zhonglian"), ("金桥", "jinqiao"), ("东方", "dongfang"), ("新元", "xinyuan"),
          ("汇智", "huizhi"), ("鼎盛", "dingsheng"), ("远航", "yuanhang"), ("云帆", "yunfan"),
          ("创达", "chuangda"), ("安泰", "antai"), ("永兴", "yongxing"), ("盛世", "shengshi"),
          ("海纳", "haina"), ("优联", "youlian"), ("锦程", "jincheng"), ("华光", "huaguang"),
          ("启明", "qiming"), ("凯德", "kaide"), ("润泽", "runze"), ("广源", "guangyuan"),
          ("联创", "lianchuang"), ("科达", "keda"), ("聚力", "juli"), ("同舟", "tongzhou"),
          ("长风", "changfeng"), ("明德", "mingde"), ("信达", "xinda"), ("海川", "haichuan"),
          ("万邦", "wanbang"), ("国盛", "guosheng"), ("普惠", "puhui"), ("青松", "qingsong")]
_LATIN_WORDS = ["Northwind", "Bluepeak", "Silverline", "Redwood", "Brightstone", "Harborview",
                "Summit", "Evergreen", "Ironbridge", "Lakeside", "Crescent", "Pioneer", "Atlas",
                "Orion", "Granite", "Meridian", "Keystone", "Sterling", "Horizon", "Vanguard"]
# industry, Chinese name part, English name part, weight
_INDUSTRIES = [("technology", "科技", "Systems", 18), ("manufacturing", "机械制造", "Industries", 20),
               ("retail", "商贸", "Trading", 14), ("logistics", "物流", "Logistics", 8),
               ("healthcare", "医疗器械", "Medical", 8), ("finance", "投资管理", "Capital", 5),
               ("education", "教育科技", "Learning", 5), ("construction", "建设工程", "Construction", 8),
               ("energy", "能源", "Energy", 6), ("food_beverage", "食品", "Foods", 8)]
_LATIN_SUFFIX = {"USD": ["Inc.", "LLC", "Corp."], "EUR": ["GmbH", "S.A.", "B.V.", "AG"],
                 "HKD": ["Limited", "Holdings Limited"], "CNY": ["Co., Ltd."]}
_LATIN_TLD = {"USD": "com", "EUR": "eu", "HKD": "com.hk", "CNY": "com"}
_ACCOUNT_MANAGERS = ["李娜", "王强", "陈静", "刘洋", "张敏", "杨磊", "赵丽", "黄涛", "周杰", "吴芳",
                     "徐明", "孙婷", "马超", "朱华", "胡建", "郭欣", "Anna Weber", "David Chan",
                     "Sophie Martin", "Michael Lee"]
_PRODUCT_CATEGORIES = ["hardware", "software", "services", "consumables", "spare_parts", "training"]
_TITLES = {
    "coach": (["采购专员", "采购经理", "商务对接人"],
              ["Procurement Specialist", "Purchasing Manager", "Vendor Relations Lead"]),
    "user": (["运维工程师", "生产主管", "仓库主管"],
             ["Operations Engineer", "Production Supervisor", "Warehouse Lead"]),
    "technical": (["技术总监", "IT经理", "质量经理"],
                  ["IT Manager", "Head of Engineering", "Quality Manager"]),
    "economic": (["总经理", "财务总监", "副总裁"], ["General Manager", "CFO", "Vice President"]),
}
_PERSONAL_MAIL = ["qq.com", "163.com", "126.com", "gmail.com", "outlook.com"]
_MOBILE_PREFIX = [130, 131, 132, 133, 135, 136, 137, 138, 139, 150, 151, 152, 153, 155, 156,
                  157, 158, 159, 180, 181, 182, 183, 185, 186, 187, 188, 189]
_COMPLAINT_CATEGORIES = ["delivery", "quality", "billing_dispute", "service", "product"]
_COMPLAINT_CHANNELS = ["phone", "email", "wechat", "web", "on_site"]
_DESCRIPTIONS = {
    "delivery": ["送货延迟，客户要求说明原因", "包裹破损，部分货物缺失", "物流信息长时间未更新"],
    "quality": ["产品存在质量缺陷，要求更换", "批次产品检验不合格", "使用一周后出现故障"],
    "billing_dispute": ["发票金额与合同不符", "重复收费，要求退款", "对逾期费用有异议"],
    "service": ["客服响应太慢", "上门服务未按约定时间到达", "客户经理长期联系不上"],
    "product": ["产品功能与宣传不符", "说明书不清楚，无法正常使用", "缺少所需的配件规格"],
}
#: Chinese New Year (first day) per year; later years fall back to 1 February.
_CNY = {2022: "2022-02-01", 2023: "2023-01-22", 2024: "2024-02-10", 2025: "2025-01-29",
        2026: "2026-02-17", 2027: "2027-02-06", 2028: "2028-01-26", 2029: "2029-02-13",
        2030: "2030-02-03", 2031: "2031-01-23", 2032: "2032-02-11", 2033: "2033-01-31",
        2034: "2034-02-19", 2035: "2035-02-08"}
#: days since 1970-01-01 of Chinese New Year for the years 1970..2199
_CNY_DAY = np.array([(dt.date.fromisoformat(_CNY[y]) if y in _CNY else dt.date(y, 2, 1)).toordinal()
                     - dt.date(1970, 1, 1).toordinal() for y in range(1970, 2200)])
_MONTH_FACTOR = np.array([0, 0.95, 0.85, 1.0, 1.0, 1.0, 1.1, 0.95, 0.95, 1.05, 1.1, 1.3, 1.45])


# --------------------------------------------------------------------------------------
# small time helpers (all times are int64 microseconds since 1970-01-01, naive UTC)
# --------------------------------------------------------------------------------------


def _day_us(d: dt.date) -> int:
    return (d - _EPOCH).days * _DAY


def _end_of_day_us(d: dt.date) -> int:
    return _day_us(d) + _DAY - 1


def _us(x: np.ndarray) -> np.ndarray:
    return np.rint(x).astype(np.int64)


def _season(day: np.ndarray, individual: np.ndarray) -> np.ndarray:
    """Relative order intensity on a day: Q4 peak, 618 and Double 11 for consumers,
    a deep dip around Chinese New Year."""
    d = day.astype("datetime64[D]")
    month_start = d.astype("datetime64[M]")
    month = month_start.astype(np.int64) % 12 + 1
    dom = (d - month_start.astype("datetime64[D]")).astype(np.int64) + 1
    year = d.astype("datetime64[Y]").astype(np.int64) + 1970
    f = _MONTH_FACTOR[month]
    off = day - _CNY_DAY[np.clip(year - 1970, 0, len(_CNY_DAY) - 1)]
    f = np.where((off >= -7) & (off <= 10), f * 0.35, f)
    f = np.where(individual & (month == 11) & (dom >= 9) & (dom <= 11), f * 2.0, f)
    f = np.where(individual & (month == 6) & (dom >= 16) & (dom <= 18), f * 1.6, f)
    return f


def _season_max(individual: np.ndarray) -> np.ndarray:
    return np.where(individual, 1.3 * 2.0, 1.45)


def _strictly_increasing(keys: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """Nudge equal timestamps within a key (sorted by key, ts) apart by microseconds."""
    pos = pd.Series(keys).groupby(keys, sort=False).cumcount().to_numpy()
    shifted = pd.Series(ts - pos).groupby(keys, sort=False).cummax().to_numpy()
    return shifted + pos


def _versions(key: str, base: dict[str, Any], events: list[dict[str, Any]]) -> pd.DataFrame:
    """Row versions from a creation row per key plus change events.

    ``base`` holds every column (``updated_at`` = creation time); each event holds the
    key, ``updated_at`` and the columns it changes (``NaN``/``None`` = unchanged,
    ``_RESET`` = set to NULL for float columns). Returns one row per version, sorted by
    key and time, with each version carrying the full row.
    """
    frames = [pd.DataFrame(base)]
    frames += [pd.DataFrame(e) for e in events if len(e[key])]
    df = pd.concat(frames, ignore_index=True)
    cols = [col for col in frames[0].columns if col not in (key, "updated_at")]
    order = np.lexsort((np.arange(len(df)), df["updated_at"].to_numpy(), df[key].to_numpy()))
    df = df.iloc[order].reset_index(drop=True)
    df[cols] = df.groupby(key, sort=False)[cols].ffill()
    df["updated_at"] = _strictly_increasing(df[key].to_numpy(), df["updated_at"].to_numpy(np.int64))
    return df


def _obj(s: pd.Series) -> np.ndarray:
    """A text column as an object array with ``None`` for NULL (pandas 3 turns it into
    its ``str`` dtype with NaN; pandas 2 keeps the objects)."""
    a = s.to_numpy(object, copy=True)
    a[pd.isna(a)] = None
    return a


def _reset_to_nan(x: pd.Series) -> np.ndarray:
    a = x.to_numpy(np.float64, na_value=np.nan)
    return np.where(a == _RESET, np.nan, a)


def _ts_col(x: np.ndarray) -> np.ndarray:
    """float µs with NaN → datetime64[us] with NaT."""
    x = np.asarray(x, dtype=np.float64)
    out = np.nan_to_num(x).astype(np.int64)  # µs below 2**53 are exact in float64
    out[np.isnan(x)] = _NULL_TS
    return out.view("datetime64[us]")


def _date_col(day_us: np.ndarray) -> np.ndarray:
    return (np.asarray(day_us, dtype=np.int64) // _DAY).astype("datetime64[D]").astype("datetime64[s]")


def _money(cents: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(cents, dtype=np.float64) / 100.0, 2)


# --------------------------------------------------------------------------------------
# the world
# --------------------------------------------------------------------------------------


class _World:
    def __init__(self, customers: int, seed: int, horizon: dt.date) -> None:
        if customers < 1:
            raise ValueError("customers must be at least 1")
        self.n = int(customers)
        self.R = _Rand(int(seed))
        self.h_end = _end_of_day_us(horizon)

    # ---- customers ---------------------------------------------------------------
    def customers(self) -> pd.DataFrame:
        R, n = self.R, self.n
        idx = np.arange(n)
        launch = R.u("c.launch", idx) < 0.04  # the customer base imported at go-live
        span = (ACQUISITION_END - WORLD_START).days + 1
        a = 0.8  # acquisition grows linearly to 1.8x the initial pace
        x = (np.sqrt(1 + 2 * a * (1 + a / 2) * R.u("c.created", idx)) - 1) / a
        day = np.where(launch, 0, np.minimum((x * span).astype(np.int64), span - 1))
        tod = np.where(launch, _HOUR + R.u("c.tod", idx) * 10 * _HOUR,
                       30 * _MIN + R.u("c.tod", idx) * 13 * _HOUR)
        created = _day_us(WORLD_START) + day * _DAY + _us(tod)
        order = np.lexsort((idx, created))
        created = created[order]
        cid = np.arange(1, n + 1)
        self.cid, self.created = cid, created

        ent = R.u("c.type", cid) < 0.40
        latin = R.u("c.latin", cid) < np.where(ent, 0.20, 0.10)
        self.ent, self.latin = ent, latin

        # where they are and what they pay in
        city = R.choice([w for *_, w in _CITIES], "c.city", cid)
        hk = city == _HK_CITY
        latin_cur = np.array(["USD", "EUR", "HKD"])[R.choice([5, 3.5, 1.5], "c.lcur", cid)]
        currency = np.where(latin, latin_cur, np.where(hk, "HKD", "CNY"))
        region = np.array([r for _, _, r, _ in _CITIES], dtype=object)[city]
        region = np.where(latin, np.where(currency == "HKD", "Hong Kong", "Overseas"), region)
        industry_i = R.choice([w for *_, w in _INDUSTRIES], "c.ind", cid)
        industry = np.where(ent, np.array([i[0] for i in _INDUSTRIES], dtype=object)[industry_i], None)
        channel = np.array(c.ACQUISITION_CHANNELS)[R.choice([45, 35, 20], "c.chan", cid)]
        self.currency, self.city = currency, city

        # buying behaviour
        arche_u = R.u("c.arche", cid)
        prospect = arche_u < 0.05
        one_time = ~prospect & (arche_u < np.where(ent, 0.05 + 0.15, 0.05 + 0.31))
        repeat = ~prospect & ~one_time
        z_val = R.normal("c.val", cid)
        key_account = ent & repeat & (R.u("c.key", cid) < 0.01)
        scale = np.where(ent, 4000.0, 1000.0) * np.exp(0.5 * z_val) * np.where(key_account, 4.0, 1.0)
        rate = np.where(ent, 8.0, 3.5) * np.exp(0.55 * R.normal("c.rate", cid) + 0.25 * z_val)
        rate = np.clip(rate * np.where(key_account, 1.5, 1.0), 0.5, 80.0)  # orders per year
        first_at = created + _us(10 * _MIN + R.exp("c.first", cid) * 12 * _DAY)
        bad = ent & repeat & ~key_account & (R.u("c.bad", cid) < 0.03)  # ends in bad debt
        churned = repeat & (R.u("c.churn", cid) < 0.30) & ~key_account & ~bad
        churn_at = np.where(churned, first_at + _us((30 + 420 * R.exp("c.churnt", cid)) * _DAY),
                            np.iinfo(np.int64).max)
        dormant = repeat & (R.u("c.dorm", cid) < 0.18)
        dorm_start = first_at + _us(R.between(60, 700, "c.dorms", cid) * _DAY)
        dorm_end = dorm_start + _us(R.between(180, 365, "c.dorml", cid) * _DAY)
        dorm_start = np.where(dormant, dorm_start, np.iinfo(np.int64).max)
        dorm_end = np.where(dormant, dorm_end, np.iinfo(np.int64).max)
        late_payer = R.u("c.late", cid) < 0.15
        bad_at = np.where(bad, first_at + _us(R.between(150, 900, "c.badt", cid) * _DAY),
                          np.iinfo(np.int64).max)
        stop_at = np.minimum(churn_at, np.where(bad, bad_at + 30 * _DAY, np.iinfo(np.int64).max))
        breadth = 1 + R.choice([30, 30, 20, 12, 8], "c.breadth", cid)
        cat_perm = np.argsort(R.u("c.cats", cid[:, None], np.arange(len(_PRODUCT_CATEGORIES))[None, :]),
                              axis=1)
        self.prospect, self.one_time, self.repeat = prospect, one_time, repeat
        self.scale, self.rate, self.first_at = scale, rate, first_at
        self.churn_at, self.dorm_start, self.dorm_end = churn_at, dorm_start, dorm_end
        self.late_payer, self.bad, self.bad_at, self.stop_at = late_payer, bad, bad_at, stop_at
        self.breadth, self.cat_perm = breadth, cat_perm

        # names
        names = []
        name_parts: list[tuple[str, str]] = []  # (city pinyin, word pinyin) for mail domains
        w_i = R.intbelow(len(_WORDS), "c.word", cid)
        lw_i = R.intbelow(len(_LATIN_WORDS), "c.lword", cid)
        form = R.u("c.form", cid) < 0.2
        suffix_i = R.intbelow(12, "c.lsuffix", cid)
        for p in range(n):
            if ent[p] and not latin[p]:
                ci, wi, ii = city[p], w_i[p], industry_i[p]
                names.append(f"{_CITIES[ci][0]}{_WORDS[wi][0]}{_INDUSTRIES[ii][1]}"
                             f"{'股份有限公司' if form[p] else '有限公司'}")
                name_parts.append((_CITIES[ci][1], _WORDS[wi][1]))
            elif ent[p]:
                sfx = _LATIN_SUFFIX[currency[p]]
                word, noun = _LATIN_WORDS[lw_i[p]], _INDUSTRIES[industry_i[p]][2]
                names.append(f"{word} {noun} {sfx[suffix_i[p] % len(sfx)]}")
                name_parts.append((f"{word}{noun}".lower(), _LATIN_TLD[currency[p]]))
            else:
                names.append("")
                name_parts.append(("", ""))
        person = self._person_names(cid, np.zeros(n, dtype=np.int64), latin)
        names = np.where(ent, np.array(names, dtype=object), person[0])
        # the same company name twice in one CRM is a branch office
        dup = pd.Series(names).groupby(names, sort=False).cumcount().to_numpy()
        branch = R.intbelow(len(_CITIES) - 1, "c.branch", cid)
        for p in np.nonzero(ent & ~latin & (dup > 0))[0]:
            names[p] = f"{names[p]}{_CITIES[(branch[p] + dup[p]) % (len(_CITIES) - 1)][0]}分公司"
        for p in np.nonzero(ent & latin & (dup > 0))[0]:
            names[p] = f"{names[p]} ({_LATIN_WORDS[(lw_i[p] + dup[p]) % len(_LATIN_WORDS)]} branch)"
        self.name_parts = name_parts

        # account management and credit
        am = R.intbelow(len(_ACCOUNT_MANAGERS), "c.am", cid)
        exp_quarter = scale * rate / 4.0
        credit = np.where(ent, np.maximum(50_000, np.round(exp_quarter * R.between(2, 4, "c.cl", cid), -4)),
                          np.nan)
        base = {
            "customer_id": cid,
            "name": names,
            "customer_type": np.where(ent, "enterprise", "individual"),
            "industry": industry,
            "region": region,
            "acquisition_channel": channel,
            "account_manager": np.array(_ACCOUNT_MANAGERS, dtype=object)[am],
            "credit_limit": credit * 100.0,  # cents
            "status": np.full(n, "active", dtype=object),
            "created_at": created,
            "updated_at": created,
            "is_deleted": np.zeros(n, dtype=np.float64),
        }
        events = []
        # account manager reassignments
        for step, (prob, lo, hi) in enumerate([(0.22, 90, 1000), (0.25, 60, 500)]):
            if step == 0:
                has = R.u("c.amc", cid, step) < prob
                t = created + _us(R.between(lo, hi, "c.amt", cid, step) * _DAY)
            else:  # a second reassignment for a quarter of those
                has = has & (R.u("c.amc", cid, step) < prob)
                t = t + _us(R.between(lo, hi, "c.amt", cid, step) * _DAY)
            am = (am + 1 + R.intbelow(len(_ACCOUNT_MANAGERS) - 1, "c.amn", cid, step)) % len(_ACCOUNT_MANAGERS)
            events.append({"customer_id": cid[has], "updated_at": t[has],
                           "account_manager": np.array(_ACCOUNT_MANAGERS, dtype=object)[am[has]]})
        # credit reviews
        rev = ent & ~bad & (R.u("c.clr", cid) < 0.30)
        factor = np.array([0.5, 1.5, 2.0])[R.choice([2, 5, 3], "c.clf", cid)]
        t = created + _us(R.between(120, 900, "c.clt", cid) * _DAY)
        events.append({"customer_id": cid[rev], "updated_at": t[rev],
                       "credit_limit": (np.round(credit * factor, -4) * 100.0)[rev]})
        # status: churned customers go inactive after a while, bad debtors get blocked
        t = churn_at + _us(R.between(180, 365, "c.inact", cid) * _DAY)
        events.append({"customer_id": cid[churned], "updated_at": t[churned],
                       "status": np.full(churned.sum(), "inactive", dtype=object)})
        lapsed = prospect & (R.u("c.plapse", cid) < 0.5)
        t = created + _us(R.between(365, 540, "c.plapset", cid) * _DAY)
        events.append({"customer_id": cid[lapsed], "updated_at": t[lapsed],
                       "status": np.full(lapsed.sum(), "inactive", dtype=object)})
        t = np.where(bad, bad_at, 0) + _us(R.between(60, 150, "c.block", cid) * _DAY)
        events.append({"customer_id": cid[bad], "updated_at": t[bad],
                       "status": np.full(bad.sum(), "blocked", dtype=object),
                       "credit_limit": np.zeros(bad.sum())})
        df = _versions("customer_id", base, events)
        return pd.DataFrame({
            "customer_id": df["customer_id"].to_numpy(np.int64),
            "name": df["name"].pipe(_obj),
            "customer_type": df["customer_type"].pipe(_obj),
            "industry": df["industry"].pipe(_obj),
            "region": df["region"].pipe(_obj),
            "acquisition_channel": df["acquisition_channel"].pipe(_obj),
            "account_manager": df["account_manager"].pipe(_obj),
            "credit_limit": _money(df["credit_limit"].to_numpy(np.float64, na_value=np.nan)),
            "status": df["status"].pipe(_obj),
            "created_at": df["created_at"].to_numpy(np.int64).view("datetime64[us]"),
            "updated_at": df["updated_at"].to_numpy(np.int64).view("datetime64[us]"),
            "is_deleted": df["is_deleted"].to_numpy() > 0,
        })

    def _person_names(self, cust: np.ndarray, j: np.ndarray, latin: np.ndarray):
        """Person names per (customer, j): the display name and a mail local part."""
        R = self.R
        s = R.intbelow(len(_SURNAMES), "p.sur", cust, j)
        g1 = R.intbelow(len(_GIVEN), "p.g1", cust, j)
        g2 = R.intbelow(len(_GIVEN), "p.g2", cust, j)
        two = R.u("p.two", cust, j) < 0.6
        fi = R.intbelow(len(_FIRST), "p.first", cust, j)
        la = R.intbelow(len(_LAST), "p.last", cust, j)
        display, local = [], []
        for k in range(len(cust)):
            if latin[k]:
                display.append(f"{_FIRST[fi[k]]} {_LAST[la[k]]}")
                local.append(f"{_FIRST[fi[k]]}.{_LAST[la[k]]}".lower())
            else:
                given = _GIVEN[g1[k]][0] + (_GIVEN[g2[k]][0] if two[k] else "")
                given_py = _GIVEN[g1[k]][1] + (_GIVEN[g2[k]][1] if two[k] else "")
                display.append(_SURNAMES[s[k]][0] + given)
                local.append(f"{given_py}.{_SURNAMES[s[k]][1]}")
        return np.array(display, dtype=object), np.array(local, dtype=object)

    def _phones(self, cust: np.ndarray, key2: np.ndarray, key3: np.ndarray, currency: np.ndarray,
                latin: np.ndarray) -> np.ndarray:
        R = self.R
        digits = (R.bits("p.phone", cust, key2, key3) % np.uint64(10**8)).astype(np.int64)
        pre = R.intbelow(len(_MOBILE_PREFIX), "p.pre", cust, key2, key3)
        out = []
        for k in range(len(cust)):
            d = digits[k]
            if not latin[k] or currency[k] == "CNY":
                out.append(f"+86 {_MOBILE_PREFIX[pre[k]]} {d // 10000 % 10000:04d} {d % 10000:04d}")
            elif currency[k] == "HKD":
                out.append(f"+852 {5000 + d // 10000 % 5000:04d} {d % 10000:04d}")
            elif currency[k] == "EUR":
                out.append(f"+49 30 {d % 10**7:07d}")
            else:
                out.append(f"+1 {[212, 415, 312, 617, 206][pre[k] % 5]} 555 {d % 10000:04d}")
        return np.array(out, dtype=object)

    # ---- contacts ------------------------------------------------------------------
    def contacts(self) -> pd.DataFrame:
        R, cid, ent = self.R, self.cid, self.ent
        counts = np.where(ent, 1 + R.choice([15, 25, 25, 17, 10, 8], "k.n", cid),
                          (R.u("k.n1", cid) < 0.6).astype(np.int64))
        cc = np.repeat(cid, counts)
        p = cc - 1
        starts = np.cumsum(counts) - counts
        j = np.arange(len(cc)) - np.repeat(starts, counts)
        cent = ent[p]

        is_dup = cent & (j >= 1) & (R.u("k.dup", cc, j) < 0.07)
        dup_mail = is_dup & (R.u("k.dupkind", cc, j) < 0.6)  # else: same phone
        jp = np.where(is_dup, 0, j)  # the person a contact is
        # mostly the customer's own culture; an individual's contact is the person
        latin = np.where(cent & (R.u("k.latin", cc, jp) >= 0.9), ~self.latin[p], self.latin[p])
        display, local = self._person_names(cc, jp, latin)
        cur = self.currency[p]
        phone = self._phones(cc, jp, np.zeros_like(j), cur, latin)
        # mail addresses: company domain for enterprises, a personal mailbox otherwise
        nn = R.intbelow(900, "k.nn", cc, jp) + 10
        pm = R.intbelow(len(_PERSONAL_MAIL), "k.pm", cc, jp)
        email = []
        for k in range(len(cc)):
            parts = self.name_parts[p[k]]
            if cent[k] and not self.latin[p[k]]:
                email.append(f"{local[k]}@{parts[0]}-{parts[1]}.com.cn")
            elif cent[k]:
                email.append(f"{local[k]}@{parts[0]}.{parts[1]}")
            else:
                email.append(f"{local[k].replace('.', '')}{nn[k]}@{_PERSONAL_MAIL[pm[k]]}")
        email = np.array(email, dtype=object)
        # duplicates: the same person entered twice, by mail (other casing) or by phone
        for k in np.nonzero(dup_mail)[0]:
            loc, dom = email[k].split("@", 1)
            email[k] = ".".join(s.capitalize() for s in loc.split(".")) + "@" + dom.upper() \
                if R.u("k.case", cc[k], j[k])[0] < 0.5 else email[k].upper()
        new_phone = self._phones(cc, j, np.ones_like(j), cur, latin)
        phone = np.where(dup_mail, new_phone, phone)
        priv = is_dup & ~dup_mail
        email = np.where(priv, np.array([f"{l.replace('.', '')}{n}@{_PERSONAL_MAIL[m]}"
                                         for l, n, m in zip(local, nn + 7, (pm + 1) % 5)], dtype=object),
                         email)
        # incomplete contact data
        miss = R.u("k.miss", cc, j)
        email = np.where(~is_dup & (j >= 1) & (miss < 0.04), None, email)
        phone = np.where(~is_dup & (j >= 1) & (miss > 0.96), None, phone)

        # CUTE roles and titles
        roles = np.array(c.CONTACT_ROLES)
        first_role = R.choice([30, 35, 15, 20], "k.role0", cc)
        role_i = np.where(j == 0, first_role, R.choice([25, 25, 25, 25], "k.role", cc, j))
        role_i = np.where(is_dup & (R.u("k.duprole", cc, j) < 0.5), first_role, role_i)
        role_i = np.where(cent, role_i, np.where(R.u("k.irole", cc) < 0.7, 3, 1))
        role = roles[role_i]
        t_i = R.intbelow(3, "k.title", cc, j)
        title = np.array([_TITLES[r][1 if la else 0][t] for r, la, t in zip(role, latin, t_i)], dtype=object)
        title = np.where(cent, title, None)

        # lifecycle
        cust_created = self.created[p]
        created = np.where(j == 0, cust_created + _us(R.between(1, 120, "k.t0", cc) * _MIN),
                           cust_created + _us(R.between(1, 800, "k.t", cc, j) * _DAY))
        go_live = created < _day_us(WORLD_START) + _DAY
        verified = np.where(go_live, created - _us(R.between(0, 600, "k.legacy", cc, j) * _DAY), created)
        deleted = np.where(is_dup, R.u("k.del", cc, j) < 0.4, R.u("k.del", cc, j) < 0.03)
        del_at = created + _us(np.where(is_dup, R.between(20, 400, "k.delt", cc, j),
                                        R.between(60, 900, "k.delt", cc, j)) * _DAY)
        del_at = np.where(deleted, del_at, np.iinfo(np.int64).max)
        cust_stop = np.minimum(self.churn_at[p], self.bad_at[p])
        cust_stop = np.where(cust_stop == np.iinfo(np.int64).max, cust_stop, cust_stop + 90 * _DAY)
        stop = np.minimum(del_at, cust_stop)
        maintained = R.u("k.maint", cc, j) < 0.55

        ckey = np.lexsort((j, cc, created))
        contact_id = np.empty(len(cc), dtype=np.int64)
        contact_id[ckey] = np.arange(1, len(cc) + 1)

        # re-verification rounds (each a new version); some come with a new phone number
        ev_id, ev_t, ev_phone = [], [], []
        K = 8
        rows = np.nonzero(maintained & (created <= self.h_end))[0]
        t_prev = created[rows].astype(np.float64)
        m0 = 0
        while len(rows):
            m = m0 + np.arange(K)
            gaps = R.between(60, 300, "k.gap", cc[rows, None], j[rows, None], m[None, :]) * _DAY
            t = t_prev[:, None] + np.cumsum(gaps, axis=1)
            ok = (t <= self.h_end) & (t < stop[rows, None])
            r_i, m_i = np.nonzero(ok)
            rr = rows[r_i]
            ti = _us(t[r_i, m_i])
            change = R.u("k.newphone", cc[rr], j[rr], m[m_i]) < 0.08
            newp = self._phones(cc[rr], j[rr], m[m_i] + 2, cur[rr], latin[rr])
            ev_id.append(contact_id[rr])
            ev_t.append(ti)
            ev_phone.append(np.where(change, newp, None))
            t_prev = t[:, -1]
            alive = (t_prev <= self.h_end) & (t_prev < stop[rows])
            rows, t_prev = rows[alive], t_prev[alive]
            m0 += K
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
        ev_t_all = np.concatenate(ev_t) if ev_t else np.zeros(0, dtype=np.int64)
        events = [
            {"contact_id": np.concatenate(ev_id) if ev_id else np.zeros(0, dtype=np.int64),
             "updated_at": ev_t_all, "last_verified_at": ev_t_all.astype(np.float64),
             "phone": np.concatenate(ev_phone) if ev_phone else np.zeros(0, dtype=object)},
            {"contact_id": contact_id[deleted], "updated_at": del_at[deleted],
             "is_deleted": np.ones(deleted.sum())},
        ]
        df = _versions("contact_id", base, events)
        return pd.DataFrame({
            "contact_id": df["contact_id"].to_numpy(np.int64),
            "customer_id": df["customer_id"].to_numpy(np.int64),
            "name": df["name"].pipe(_obj),
            "title": df["title"].pipe(_obj),
            "email": df["email"].pipe(_obj),
            "phone": df["phone"].pipe(_obj),
            "role": df["role"].pipe(_obj),
            "last_verified_at": _ts_col(df["last_verified_at"].to_numpy(np.float64)),
            "updated_at": df["updated_at"].to_numpy(np.int64).view("datetime64[us]"),
            "is_deleted": df["is_deleted"].to_numpy() > 0,
        })

    # ---- orders --------------------------------------------------------------------
    def orders(self) -> pd.DataFrame:
        R, h_end = self.R, self.h_end
        cid = self.cid
        # the first order of every buyer ...
        buyers = ~self.prospect & (self.first_at <= h_end)
        oc = [cid[buyers]]
        ok = [np.zeros(buyers.sum(), dtype=np.int64)]
        ot = [self.first_at[buyers]]
        # ... then repeat orders: a thinned Poisson process in rounds of K candidates
        ind = ~self.ent
        lam_max = self.rate * _season_max(ind) / _YEAR  # per µs
        rows = np.nonzero(self.repeat & (self.first_at <= h_end))[0]
        t_prev = self.first_at[rows].astype(np.float64)
        K, k0 = 16, 1
        while len(rows):
            k = k0 + np.arange(K)
            gaps = R.exp("o.gap", cid[rows, None], k[None, :]) / lam_max[rows, None]
            t = t_prev[:, None] + np.cumsum(gaps, axis=1)
            r_i, k_i = np.nonzero((t <= h_end) & (t < self.stop_at[rows, None]))
            rr = rows[r_i]
            tt = t[r_i, k_i]
            kk = k[k_i]
            day = np.floor(tt / _DAY).astype(np.int64)
            accept = R.u("o.thin", cid[rr], kk) < _season(day, ind[rr]) / _season_max(ind[rr])
            accept &= ~((tt >= self.dorm_start[rr]) & (tt < self.dorm_end[rr]))
            rr, kk, day = rr[accept], kk[accept], day[accept]
            tod = np.where(self.ent[rr], 30 * _MIN + R.u("o.tod", cid[rr], kk) * 10 * _HOUR,
                           R.u("o.tod", cid[rr], kk) * 16 * _HOUR)
            placed = np.maximum(day * _DAY + _us(tod), self.first_at[rr] + 5 * _MIN)
            oc.append(cid[rr])
            ok.append(kk)
            ot.append(placed)
            t_prev = t[:, -1]
            alive = (t_prev <= h_end) & (t_prev < self.stop_at[rows])
            rows, t_prev = rows[alive], t_prev[alive]
            k0 += K
        oc, ok, placed = np.concatenate(oc), np.concatenate(ok), np.concatenate(ot)
        keep = placed <= h_end
        oc, ok, placed = oc[keep], ok[keep], placed[keep]
        srt = np.lexsort((ok, oc, placed))
        oc, ok, placed = oc[srt], ok[srt], placed[srt]
        order_id = np.arange(1, len(oc) + 1)
        p = oc - 1
        ent = self.ent[p]
        n_o = len(oc)

        # what was ordered and for how much
        cur = self.currency[p].astype(object)
        other = ent & (R.u("o.fx", oc, ok) < 0.04)
        cur = np.where(other, np.array(c.KNOWN_CURRENCIES, dtype=object)[R.intbelow(4, "o.fxc", oc, ok)], cur)
        value_cny = self.scale[p] * np.exp(0.45 * R.normal("o.val", oc, ok) - 0.1)
        fx = np.array([_FX_TO_CNY[x] for x in cur])
        gross = np.maximum(100, np.rint(value_cny / fx * 100)).astype(np.int64)
        neg = R.u("o.neg", oc, ok) < 0.02
        margin = np.where(neg, R.between(-0.2, -0.01, "o.margin", oc, ok),
                          R.between(0.10, 0.50, "o.margin", oc, ok))
        cost = np.rint(gross * (1 - margin)).astype(np.int64)
        r = np.floor(self.breadth[p] * R.u("o.cat", oc, ok) ** 1.5).astype(np.int64)
        category = np.array(_PRODUCT_CATEGORIES, dtype=object)[self.cat_perm[p, r]]
        order_day = placed // _DAY
        term = np.where(ent, 60, 30)
        due_day = order_day + term
        due_us = due_day * _DAY

        # what happened to it afterwards
        cancelled = R.u("o.cancel", oc, ok) < 0.025
        cancel_t = placed + _us(R.between(10, 2880, "o.cancelt", oc, ok) * _MIN)
        ship_t = placed + _us(np.where(ent, R.between(4, 120, "o.ship", oc, ok),
                                       R.between(2, 72, "o.ship", oc, ok)) * _HOUR)
        bad_order = self.bad[p] & (placed >= self.bad_at[p] - 120 * _DAY) & ~cancelled
        dispute = ent & ~bad_order & ~cancelled & (R.u("o.dispute", oc, ok) < 0.004)
        returned = ~cancelled & ~bad_order & ~dispute & (R.u("o.ret", oc, ok) < np.where(ent, 0.025, 0.06))
        ret_t = ship_t + _us(R.between(7, 45, "o.rett", oc, ok) * _DAY)
        prepaid = ~ent & (R.u("o.prepaid", oc, ok) < 0.85)
        late = (self.late_payer[p] & (R.u("o.late", oc, ok) < 0.7)) | (R.u("o.late2", oc, ok) < 0.04)
        pay_tod = _us(R.between(0.5, 10.5, "o.paytod", oc, ok) * _HOUR)
        on_time = placed + _us(R.between(0.2, 0.95, "o.payt", oc, ok) * term * _DAY)
        late_t = due_us + _DAY * (1 + np.floor(R.u("o.latet", oc, ok)
                                              * np.where(self.late_payer[p], 90, 25)).astype(np.int64)) + pay_tod
        pay_t = np.where(prepaid, placed + _us(R.between(1, 30, "o.prept", oc, ok) * _MIN),
                         np.where(late, late_t, on_time))
        frac = np.where(bad_order, np.where(R.u("o.partial", oc, ok) < 0.4,
                                            R.between(0.1, 0.6, "o.frac", oc, ok), 0.0),
                        np.where(dispute, R.between(0.5, 0.95, "o.frac", oc, ok), 1.0))
        pay_t = np.where(bad_order | dispute,
                         due_us + _us(R.between(0, 60, "o.ppt", oc, ok) * _DAY) + pay_tod, pay_t)
        paid = np.rint(gross * frac).astype(np.int64)
        pays = ~cancelled & (paid > 0) & ~(returned & (pay_t > ret_t))
        write_off = bad_order | dispute
        wo_t = due_us + _us(np.where(bad_order, R.between(150, 240, "o.wot", oc, ok),
                                     R.between(90, 200, "o.wot", oc, ok)) * _DAY)
        deleted = cancelled & (R.u("o.del", oc, ok) < 0.15)
        del_t = cancel_t + _us(R.between(3, 60, "o.delt", oc, ok) * _DAY)
        self.o = dict(order_id=order_id, oc=oc, ok=ok, placed=placed, cancelled=cancelled,
                      returned=returned, ret_t=ret_t, write_off=write_off, due_us=due_us)

        base = {
            "order_id": order_id,
            "customer_id": oc,
            "order_date": order_day * _DAY,
            "status": np.full(n_o, "placed", dtype=object),
            "currency": cur,
            "gross_amount": gross,
            "cost_amount": cost,
            "product_category": category,
            "invoice_due_date": due_us,
            "paid_amount": np.zeros(n_o),
            "paid_at": np.full(n_o, np.nan),
            "written_off_amount": np.zeros(n_o),
            "updated_at": placed,
            "is_deleted": np.zeros(n_o),
        }
        ship = ~cancelled
        events = [
            {"order_id": order_id[cancelled], "updated_at": cancel_t[cancelled],
             "status": np.full(cancelled.sum(), "cancelled", dtype=object)},
            {"order_id": order_id[ship], "updated_at": ship_t[ship],
             "status": np.full(ship.sum(), "shipped", dtype=object)},
            {"order_id": order_id[returned], "updated_at": ret_t[returned],
             "status": np.full(returned.sum(), "returned", dtype=object)},
            {"order_id": order_id[pays], "updated_at": pay_t[pays],
             "paid_amount": paid[pays].astype(np.float64), "paid_at": pay_t[pays].astype(np.float64)},
            {"order_id": order_id[write_off], "updated_at": wo_t[write_off],
             "written_off_amount": (gross - np.where(pays, paid, 0))[write_off].astype(np.float64)},
            {"order_id": order_id[deleted], "updated_at": del_t[deleted], "is_deleted": np.ones(deleted.sum())},
        ]
        df = _versions("order_id", base, events)
        return pd.DataFrame({
            "order_id": df["order_id"].to_numpy(np.int64),
            "customer_id": df["customer_id"].to_numpy(np.int64),
            "order_date": _date_col(df["order_date"].to_numpy(np.int64)),
            "status": df["status"].pipe(_obj),
            "currency": df["currency"].pipe(_obj),
            "gross_amount": _money(df["gross_amount"]),
            "cost_amount": _money(df["cost_amount"]),
            "product_category": df["product_category"].pipe(_obj),
            "invoice_due_date": _date_col(df["invoice_due_date"].to_numpy(np.int64)),
            "paid_amount": _money(df["paid_amount"]),
            "paid_at": _ts_col(df["paid_at"].to_numpy(np.float64)),
            "written_off_amount": _money(df["written_off_amount"]),
            "updated_at": df["updated_at"].to_numpy(np.int64).view("datetime64[us]"),
            "is_deleted": df["is_deleted"].to_numpy() > 0,
        })

    # ---- complaints ----------------------------------------------------------------
    def complaints(self) -> pd.DataFrame:
        R, o, cid = self.R, self.o, self.cid
        oc, ok = o["oc"], o["ok"]
        cats = np.array(_COMPLAINT_CATEGORIES, dtype=object)
        parts = []  # (src, a, b, customer, order_id or -1, opened, category index or -1)

        # 1) about an order, within 30 days; returns come with a complaint more often
        normal = ~o["cancelled"] & ~o["returned"] & (R.u("q.o", oc, ok) < 0.025)
        opened = o["placed"] + _us(R.between(1, 30, "q.ot", oc, ok) * _DAY)
        cat = R.choice([35, 25, 10, 15, 15], "q.ocat", oc, ok)
        parts.append((0, oc[normal], ok[normal], o["order_id"][normal], opened[normal], cat[normal]))
        ret = o["returned"] & (R.u("q.r", oc, ok) < 0.25)
        opened = o["ret_t"] - _us(R.between(0, 48, "q.rt", oc, ok) * _HOUR)
        cat = np.array([1, 4, 0])[R.choice([50, 30, 20], "q.rcat", oc, ok)]
        parts.append((1, oc[ret], ok[ret], o["order_id"][ret], opened[ret], cat[ret]))
        # 2) billing disputes over invoices that end up written off
        disp = o["write_off"] & (R.u("q.w", oc, ok) < 0.5)
        opened = o["due_us"] + _us(R.between(10, 60, "q.wt", oc, ok) * _DAY)
        parts.append((2, oc[disp], ok[disp], o["order_id"][disp], opened[disp],
                      np.full(len(oc), 2)[disp]))
        # 3) bursts: several complaints from one customer within three weeks
        burst = ~self.prospect & (R.u("q.b", cid) < np.where(self.ent, 0.035, 0.012))
        b_at = self.first_at + _us(R.between(30, 900, "q.bt", cid) * _DAY)
        n_b = 3 + R.intbelow(4, "q.bn", cid)
        bc = np.repeat(cid[burst], n_b[burst])
        bj = np.arange(len(bc)) - np.repeat(np.cumsum(n_b[burst]) - n_b[burst], n_b[burst])
        b_open = b_at[bc - 1] + _us(R.between(0, 21, "q.bo", bc, bj) * _DAY)
        cause = R.intbelow(5, "q.bcause", bc)
        b_cat = np.where(R.u("q.bsame", bc, bj) < 0.7, cause, R.intbelow(5, "q.bcat", bc, bj))
        # linked to the customer's last live order of the past 90 days, if there is one
        live = ~o["cancelled"]
        left = pd.DataFrame({"customer_id": bc, "t": b_open, "i": np.arange(len(bc))}).sort_values(["t", "i"])
        right = pd.DataFrame({"customer_id": oc[live], "t": o["placed"][live],
                              "order_id": o["order_id"][live]}).sort_values(["t", "order_id"])
        linked = pd.merge_asof(left, right, on="t", by="customer_id", direction="backward",
                               tolerance=90 * _DAY, allow_exact_matches=False).sort_values("i")
        b_order = linked["order_id"].to_numpy(np.float64, na_value=np.nan)
        b_order = np.where(np.isnan(b_order), -1, b_order).astype(np.int64)
        parts.append((3, bc, bj, b_order, b_open, b_cat))
        # 4) the odd complaint about the account rather than an order
        gen = ~self.prospect & (R.u("q.g", cid) < 0.06)
        g_open = self.created + _us(R.between(30, 1000, "q.gt", cid) * _DAY)
        g_cat = np.array([3, 2, 4])[R.choice([60, 25, 15], "q.gcat", cid)]
        parts.append((4, cid[gen], np.zeros(gen.sum(), dtype=np.int64), np.full(gen.sum(), -1),
                      g_open[gen], g_cat[gen]))

        src = np.concatenate([np.full(len(x[1]), x[0]) for x in parts])
        qa = np.concatenate([x[1] for x in parts])
        qb = np.concatenate([x[2] for x in parts])
        q_order = np.concatenate([x[3] for x in parts])
        opened = np.concatenate([x[4] for x in parts])
        cat_i = np.concatenate([x[5] for x in parts])
        keep = opened <= self.h_end
        src, qa, qb, q_order, opened, cat_i = (x[keep] for x in (src, qa, qb, q_order, opened, cat_i))
        cust = np.concatenate([x[1] for x in parts])[keep]  # every source is keyed by customer
        srt = np.lexsort((qb, qa, src, opened))
        src, qa, qb, q_order, opened, cat_i, cust = (x[srt] for x in (src, qa, qb, q_order, opened, cat_i, cust))
        n_q = len(src)
        complaint_id = np.arange(1, n_q + 1)

        sev = 1 + np.where(src == 3, R.choice([15, 30, 35, 20], "q.sev", src, qa, qb),
                           R.choice([40, 35, 18, 7], "q.sev", src, qa, qb))
        channel = np.array(_COMPLAINT_CHANNELS, dtype=object)[R.choice([35, 20, 25, 15, 5], "q.ch", src, qa, qb)]
        d_i = R.intbelow(3, "q.desc", src, qa, qb)
        category = cats[cat_i]
        desc = np.array([_DESCRIPTIONS[cg][d] for cg, d in zip(category, d_i)], dtype=object)

        prog = R.u("q.prog", src, qa, qb) < 0.85
        prog_t = opened + _us(R.between(30, 2880, "q.progt", src, qa, qb) * _MIN)
        never = R.u("q.never", src, qa, qb) < 0.03
        median_days = np.array([0, 2.0, 4.0, 7.0, 12.0])[sev]
        res_t = np.maximum(opened + _us(median_days * np.exp(0.7 * R.normal("q.res", src, qa, qb)) * _DAY),
                           np.where(prog, prog_t, opened) + _HOUR)
        resolved = ~never
        comp_p = np.array([0, 0.05, 0.15, 0.35, 0.6])[sev]
        comp_med = np.array([0, 80, 300, 1500, 6000.0])[sev]
        comp = np.where(R.u("q.comp", src, qa, qb) < comp_p,
                        np.maximum(10, np.round(comp_med * np.exp(0.6 * R.normal("q.compv", src, qa, qb)), -1)), 0)
        reopen = resolved & (R.u("q.reopen", src, qa, qb) < 0.07)
        reopen_t = res_t + _us(R.between(2, 30, "q.reopent", src, qa, qb) * _DAY)
        re_res = reopen & (R.u("q.reres", src, qa, qb) < 0.85)
        re_res_t = reopen_t + _us(R.between(1, 20, "q.rerest", src, qa, qb) * _DAY)
        extra = np.where(R.u("q.extra", src, qa, qb) < 0.3, np.round(comp_med * 0.5, -1), 0)

        base = {
            "complaint_id": complaint_id,
            "customer_id": cust,
            "order_id": q_order.astype(np.float64),
            "opened_at": opened,
            "category": category,
            "severity": sev,
            "channel": channel,
            "status": np.full(n_q, "open", dtype=object),
            "resolved_at": np.full(n_q, np.nan),
            "compensation_amount": np.zeros(n_q),
            "description": desc,
            "updated_at": opened,
            "is_deleted": np.zeros(n_q),
        }
        events = [
            {"complaint_id": complaint_id[prog], "updated_at": prog_t[prog],
             "status": np.full(prog.sum(), "in_progress", dtype=object)},
            {"complaint_id": complaint_id[resolved], "updated_at": res_t[resolved],
             "status": np.full(resolved.sum(), "resolved", dtype=object),
             "resolved_at": res_t[resolved].astype(np.float64),
             "compensation_amount": comp[resolved] * 100.0},
            {"complaint_id": complaint_id[reopen], "updated_at": reopen_t[reopen],
             "status": np.full(reopen.sum(), "reopened", dtype=object),
             "resolved_at": np.full(reopen.sum(), _RESET)},
            {"complaint_id": complaint_id[re_res], "updated_at": re_res_t[re_res],
             "status": np.full(re_res.sum(), "resolved", dtype=object),
             "resolved_at": re_res_t[re_res].astype(np.float64),
             "compensation_amount": ((comp + extra) * 100.0)[re_res]},
        ]
        df = _versions("complaint_id", base, events)
        order_col = df["order_id"].to_numpy(np.float64)
        return pd.DataFrame({
            "complaint_id": df["complaint_id"].to_numpy(np.int64),
            "customer_id": df["customer_id"].to_numpy(np.int64),
            "order_id": pd.array(np.where(order_col < 0, np.nan, order_col), dtype="Int64"),
            "opened_at": df["opened_at"].to_numpy(np.int64).view("datetime64[us]"),
            "category": df["category"].pipe(_obj),
            "severity": df["severity"].to_numpy(np.int64),
            "channel": df["channel"].pipe(_obj),
            "status": df["status"].pipe(_obj),
            "resolved_at": _ts_col(_reset_to_nan(df["resolved_at"])),
            "compensation_amount": _money(df["compensation_amount"]),
            "description": df["description"].pipe(_obj),
            "updated_at": df["updated_at"].to_numpy(np.int64).view("datetime64[us]"),
            "is_deleted": df["is_deleted"].to_numpy() > 0,
        })

    # ---- financial statements --------------------------------------------------------
    def statements(self) -> pd.DataFrame:
        R, cid = self.R, self.cid
        files = self.ent & (R.u("f.files", cid) < 0.70)
        fc = cid[files]
        p = fc - 1

        def quarter_of(us: np.ndarray) -> np.ndarray:
            m = (np.asarray(us) // _DAY).astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)
            return (m // 12 + 1970) * 4 + (m % 12) // 3

        def quarter_end_us(q: np.ndarray) -> np.ndarray:
            next_month = (q // 4 - 1970) * 12 + (q % 4) * 3 + 3
            return next_month.astype("datetime64[M]").astype("datetime64[D]").astype(np.int64) * _DAY - _DAY

        q0 = quarter_of(self.created[p]) - 1  # the last closed quarter when onboarded
        q_h = int(quarter_of(np.array([self.h_end]))[0])
        n_cols = max(0, int(q_h - q0.min() + 1)) if len(fc) else 0
        qi = np.arange(n_cols)
        q = q0[:, None] + qi[None, :]
        pe = quarter_end_us(q)
        stop = np.minimum(self.churn_at[p], self.bad_at[p])
        stop = np.where(stop == np.iinfo(np.int64).max, stop, stop + 180 * _DAY)
        filed = pe + _DAY + _us(R.between(30, 60, "f.filed", fc[:, None], q) * _DAY)
        onboard = self.created[p] + _us(R.between(1, 14, "f.onb", fc) * _DAY)
        if n_cols:
            filed[:, 0] = np.maximum(filed[:, 0], onboard)

        # a company's quarterly figures: a random walk in log revenue with seasonality
        rev0 = np.exp(np.log(20e6) + 1.3 * R.normal("f.rev0", fc))
        drift = 0.01 + 0.02 * R.normal("f.drift", fc)
        shock = 0.06 * R.normal("f.shock", fc[:, None], q)
        season = np.array([0.85, 1.0, 1.0, 1.15])[q % 4]
        revenue = rev0[:, None] * np.exp(np.cumsum(drift[:, None] + shock, axis=1)) * season
        margin = (0.05 + 0.06 * R.normal("f.margin", fc))[:, None] + 0.03 * R.normal("f.marginq", fc[:, None], q)
        lev_kind = R.choice([85, 10, 5], "f.levk", fc)
        lev = np.where(lev_kind == 0, R.between(0.25, 0.7, "f.lev", fc),
                       np.where(lev_kind == 1, R.between(0.7, 0.9, "f.lev", fc), R.between(0.9, 1.15, "f.lev", fc)))
        lev = np.clip(lev[:, None] + 0.02 * R.normal("f.levq", fc[:, None], q), 0.05, 1.3)
        assets = 4 * revenue * np.exp(0.4 * R.normal("f.turn", fc))[:, None] * (1 + 0.02 * R.normal("f.aq", fc[:, None], q))
        cur_share = R.between(0.3, 0.7, "f.cas", fc)[:, None]
        cr = np.exp(np.log(1.4) + 0.35 * R.normal("f.cr", fc))[:, None] * np.exp(0.05 * R.normal("f.crq", fc[:, None], q))
        liabilities = assets * lev
        cur_assets = assets * cur_share
        cur_liab = np.minimum(cur_assets / cr, liabilities)

        def cents(x: np.ndarray) -> np.ndarray:
            return np.clip(np.rint(x * 100), -9e13, 9e13)

        sel = (filed <= self.h_end) & (pe < stop[:, None])
        r_i, q_i = np.nonzero(sel)
        srt = np.lexsort((q[r_i, q_i], fc[r_i], filed[r_i, q_i]))
        r_i, q_i = r_i[srt], q_i[srt]
        n_s = len(r_i)
        statement_id = np.arange(1, n_s + 1)
        sc, sq = fc[r_i], q[r_i, q_i]
        rev_c = cents(revenue[r_i, q_i])
        np_c = cents(revenue[r_i, q_i] * margin[r_i, q_i])
        base = {
            "statement_id": statement_id,
            "customer_id": sc,
            "period_end": pe[r_i, q_i],
            "revenue": rev_c,
            "net_profit": np_c,
            "total_assets": cents(assets[r_i, q_i]),
            "total_liabilities": cents(liabilities[r_i, q_i]),
            "current_assets": cents(cur_assets[r_i, q_i]),
            "current_liabilities": cents(cur_liab[r_i, q_i]),
            "updated_at": filed[r_i, q_i],
            "is_deleted": np.zeros(n_s),
        }
        # restatements: a corrected filing weeks later
        restate = R.u("f.restate", sc, sq) < 0.04
        f_rev = R.between(0.95, 1.05, "f.rsf", sc, sq)
        new_rev = np.rint(rev_c * f_rev)
        events = [{"statement_id": statement_id[restate],
                   "updated_at": (filed[r_i, q_i] + _us(R.between(20, 90, "f.rst", sc, sq) * _DAY))[restate],
                   "revenue": new_rev[restate],
                   "net_profit": np.rint(np_c + (new_rev - rev_c) * 0.3)[restate]}]
        df = _versions("statement_id", base, events)
        out = {"statement_id": df["statement_id"].to_numpy(np.int64),
               "customer_id": df["customer_id"].to_numpy(np.int64),
               "period_end": _date_col(df["period_end"].to_numpy(np.int64))}
        for col in ("revenue", "net_profit", "total_assets", "total_liabilities", "current_assets",
                    "current_liabilities"):
            out[col] = _money(df[col])
        out["updated_at"] = df["updated_at"].to_numpy(np.int64).view("datetime64[us]")
        out["is_deleted"] = df["is_deleted"].to_numpy() > 0
        return pd.DataFrame(out)

    def build(self) -> dict[str, pd.DataFrame]:
        customers = self.customers()
        world = {
            "customers": customers,
            "contacts": self.contacts(),
            "orders": self.orders(),
        }
        world["complaints"] = self.complaints()
        world["financial_statements"] = self.statements()
        h = np.datetime64(self.h_end, "us")
        out = {}
        for e in c.ENTITIES:
            df = world[e.name]
            df = df[df["updated_at"] <= h].reset_index(drop=True)
            out[e.name] = df[list(e.columns)]
        return out


def generate_world(customers: int, seed: int, horizon: dt.date) -> dict[str, pd.DataFrame]:
    """Every row version of the demo world whose ``updated_at`` is on or before ``horizon``.

    Returns one DataFrame per contract entity with exactly the contract's columns, one
    row per version, sorted by key and ``updated_at``. Timestamps are ``datetime64[us]``
    (naive UTC, ``NaT`` for NULL), dates ``datetime64[s]`` at midnight, money ``float64``
    rounded to cents (``NaN`` for NULL), ``is_deleted`` ``bool``; nullable integers
    (``complaints.order_id``) are ``Int64``; text is pandas' string dtype. Versions on or before a date never change
    when the horizon is extended.
    """
    horizon = _as_date(horizon)
    return _World(customers, seed, horizon).build()


# --------------------------------------------------------------------------------------
# writing the source database
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AdvanceResult:
    """What one :func:`advance_source` call did."""

    applied_from: dt.date
    applied_until: dt.date
    rows_changed: dict[str, int]
    rows_total: dict[str, int]


def _as_date(d: Any) -> dt.date:
    if isinstance(d, dt.datetime):
        return d.date()
    if isinstance(d, dt.date):
        return d
    if isinstance(d, str):
        return dt.date.fromisoformat(d)
    raise TypeError(f"expected a date, got {d!r}")


def _sa_type(logical: str, column: str) -> sa.types.TypeEngine:
    if logical == "int":
        return sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    if logical == "text":
        if column == "description":
            return sa.Text()
        return sa.Text().with_variant(sa.VARCHAR(255), "mysql", "mariadb")
    if logical == "money":
        return sa.Numeric(14, 2)
    if logical == "date":
        return sa.Date()
    if logical == "timestamp":
        return sa.TIMESTAMP().with_variant(sa_mysql.DATETIME(fsp=6), "mysql", "mariadb")
    if logical == "bool":
        return sa.Boolean(create_constraint=False)
    raise ValueError(f"unknown logical type {logical!r}")


def _metadata(schema: str | None) -> sa.MetaData:
    md = sa.MetaData(schema=schema)
    kw = {"mysql_charset": "utf8mb4", "mariadb_charset": "utf8mb4"}
    for e in c.ENTITIES:
        cols = [sa.Column(name, _sa_type(t, name), primary_key=(name == e.key), autoincrement=False,
                          nullable=(name != e.key))
                for name, t in e.columns.items()]
        sa.Table(e.name, md, *cols, sa.Index(f"ix_{e.name}_{e.updated_at}", e.updated_at), **kw)
    sa.Table(STATE_TABLE, md,
             sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
             sa.Column("seed", sa.BigInteger, nullable=False),
             sa.Column("customers", sa.BigInteger, nullable=False),
             sa.Column("applied_until", sa.Date, nullable=False),
             sa.Column("generator_version", sa.String(32), nullable=False), **kw)
    return md


def _wire_values(s: pd.Series, logical: str, dialect: str) -> list:
    """One column as a list of Python values the DB driver binds as they are."""
    if logical == "int":
        if s.isna().any():
            return [None if v is pd.NA else int(v) for v in s.astype(object)]
        return s.to_numpy(np.int64).tolist()
    if logical == "text":
        return s.astype(object).where(s.notna(), None).tolist()
    if logical == "money":
        a = s.to_numpy(np.float64)
        if dialect == "sqlite":
            return [None if v != v else v for v in a.tolist()]
        return [None if v != v else f"{v:.2f}" for v in a.tolist()]
    if logical in ("date", "timestamp"):
        a = s.to_numpy()
        strings = np.datetime_as_string(a.astype("datetime64[D]" if logical == "date" else "datetime64[us]"),
                                        unit="D" if logical == "date" else "us")
        if logical == "timestamp":
            strings = np.strings.replace(strings, "T", " ")
        nat = np.isnat(a)
        return [None if n else v for v, n in zip(strings.tolist(), nat.tolist())]
    if logical == "bool":
        return s.to_numpy(bool).astype(np.int64).tolist()
    raise ValueError(logical)


def _pg_copy_text(rows: list[tuple]) -> io.StringIO:
    def field(v: Any) -> str:
        if v is None:
            return "\\N"
        if isinstance(v, str):
            return v.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
        return str(v)

    buf = io.StringIO()
    buf.writelines("\t".join(map(field, r)) + "\n" for r in rows)
    buf.seek(0)
    return buf


def _latest_changes(df: pd.DataFrame, key: str, after_us: int | None) -> pd.DataFrame:
    """The newest version of every key that changed after ``after_us``."""
    if after_us is not None:
        df = df[df["updated_at"] > np.datetime64(after_us, "us")]
    return df.drop_duplicates(key, keep="last").sort_values(key, kind="stable").reset_index(drop=True)


def _engine(url: str) -> sa.Engine:
    # plain postgresql:// means psycopg2 here (COPY below uses its copy_expert), whatever
    # SQLAlchemy's default driver for the dialect is
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg2://" + url[len("postgresql://"):]
    elif url.startswith("mysql://"):
        url = "mysql+pymysql://" + url[len("mysql://"):]
    u = sa.make_url(url)
    if u.get_backend_name() == "sqlite" and u.database not in (None, "", ":memory:"):
        Path(u.database).parent.mkdir(parents=True, exist_ok=True)
    return sa.create_engine(u)


def advance_source(url: str, until: dt.date, customers: int = 5000, seed: int = 42,
                   progress: bool = False, schema: str | None = None) -> AdvanceResult:
    """Bring the demo source at ``url`` to its state at the end of day ``until``.

    Creates the five contract tables and ``_demo_state`` if missing, then upserts the
    newest version of every row that changed after the last applied day, all in one
    transaction. Advancing to the day already applied is a no-op; going back, or using a
    different ``seed``/``customers`` than the source was filled with, raises
    ``ValueError``. ``schema`` is a PostgreSQL schema or a MySQL/MariaDB database
    (created if missing); SQLite has none.
    """
    until = _as_date(until)
    if not 0 <= int(seed) < 2**63:
        raise ValueError("seed must be a non-negative 63-bit integer")
    engine = _engine(url)
    dialect = engine.dialect.name
    if dialect not in ("sqlite", "postgresql", "mysql", "mariadb"):
        raise ValueError(f"unsupported source dialect {dialect!r}")
    if schema is not None and dialect == "sqlite":
        raise ValueError("SQLite sources have no schema; put the file where you want it")
    md = _metadata(schema)
    state = md.tables[f"{schema}.{STATE_TABLE}" if schema else STATE_TABLE]
    try:
        return _advance(engine, dialect, md, state, until, int(customers), int(seed), progress, schema)
    finally:
        engine.dispose()


def _advance(engine: sa.Engine, dialect: str, md: sa.MetaData, state: sa.Table, until: dt.date,
             customers: int, seed: int, progress: bool, schema: str | None) -> AdvanceResult:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    # DDL first and on its own: MySQL commits implicitly around DDL anyway.
    with engine.begin() as conn:
        if schema is not None:
            q = conn.dialect.identifier_preparer.quote(schema)
            conn.exec_driver_sql(f"CREATE {'SCHEMA' if dialect == 'postgresql' else 'DATABASE'} IF NOT EXISTS {q}")
        md.create_all(conn, checkfirst=True)

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   disable=not progress)
    with bar, engine.begin() as conn:
        sel = sa.select(state).where(state.c.id == 1)
        if dialect != "sqlite":
            sel = sel.with_for_update()
        row = conn.execute(sel).mappings().first()
        tables = {e.name: md.tables[f"{schema}.{e.name}" if schema else e.name] for e in c.ENTITIES}
        if row is None:
            for name, t in tables.items():
                if conn.execute(sa.select(sa.func.count()).select_from(t)).scalar():
                    raise ValueError(f"table {name} already holds rows but there is no {STATE_TABLE}: "
                                     "not a demo source; use an empty database")
            prev = None
        else:
            if (row["seed"], row["customers"]) != (seed, customers):
                raise ValueError(f"source was generated with seed={row['seed']}, customers={row['customers']}; "
                                 f"asked for seed={seed}, customers={customers}; use a fresh source")
            if row["generator_version"] != GENERATOR_VERSION:
                raise ValueError(f"source was generated by demo generator version {row['generator_version']}, "
                                 f"this is version {GENERATOR_VERSION}; use a fresh source")
            prev = _as_date(row["applied_until"])
            if until < prev:
                raise ValueError(f"source already advanced to {prev.isoformat()}; "
                                 "use a fresh source to go back")
        applied_from = WORLD_START if prev is None else prev + dt.timedelta(days=1)
        changed = {e.name: 0 for e in c.ENTITIES}
        if prev is None or until > prev:
            gen_task = bar.add_task("generating demo world", total=1)
            world = generate_world(customers, seed, until)
            bar.advance(gen_task)
            after = None if prev is None else _end_of_day_us(prev)
            raw = conn.connection.dbapi_connection
            for e in c.ENTITIES:
                rows = _latest_changes(world[e.name], e.key, after)
                changed[e.name] = len(rows)
                task = bar.add_task(f"writing {e.name}", total=len(rows))
                _upsert(conn, raw, dialect, tables[e.name], e, rows, lambda k, t=task: bar.advance(t, k))
            values = {"seed": seed, "customers": customers, "applied_until": until,
                      "generator_version": GENERATOR_VERSION}
            if row is None:
                conn.execute(state.insert().values(id=1, **values))
            else:
                conn.execute(state.update().where(state.c.id == 1).values(**values))
        totals = {name: int(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar())
                  for name, t in tables.items()}
    return AdvanceResult(applied_from=applied_from, applied_until=until, rows_changed=changed, rows_total=totals)


def _upsert(conn: sa.Connection, raw: Any, dialect: str, table: sa.Table, entity: c.Entity,
            rows: pd.DataFrame, advance: Callable[[int], None], chunk: int = 20_000) -> None:
    if rows.empty:
        return
    prep = conn.dialect.identifier_preparer
    qt = prep.format_table(table)
    cols = list(entity.columns)
    qcols = ", ".join(prep.quote(x) for x in cols)
    others = [x for x in cols if x != entity.key]
    values = [_wire_values(rows[x], t, dialect) for x, t in entity.columns.items()]
    data = list(zip(*values))
    cur = raw.cursor()
    try:
        if dialect == "sqlite":
            sql = (f"INSERT INTO {qt} ({qcols}) VALUES ({', '.join('?' * len(cols))}) "
                   f"ON CONFLICT ({prep.quote(entity.key)}) DO UPDATE SET "
                   + ", ".join(f"{prep.quote(x)} = excluded.{prep.quote(x)}" for x in others))
        elif dialect == "postgresql":
            stage = prep.quote(f"_demo_stage_{entity.name}")
            cur.execute(f"CREATE TEMP TABLE {stage} (LIKE {qt}) ON COMMIT DROP")
            for i in range(0, len(data), chunk):
                cur.copy_expert(f"COPY {stage} ({qcols}) FROM STDIN", _pg_copy_text(data[i:i + chunk]))
                advance(len(data[i:i + chunk]))
            cur.execute(f"INSERT INTO {qt} ({qcols}) SELECT {qcols} FROM {stage} "
                        f"ON CONFLICT ({prep.quote(entity.key)}) DO UPDATE SET "
                        + ", ".join(f"{prep.quote(x)} = EXCLUDED.{prep.quote(x)}" for x in others))
            cur.execute(f"DROP TABLE {stage}")
            return
        else:
            sql = (f"INSERT INTO {qt} ({qcols}) VALUES ({', '.join(['%s'] * len(cols))}) "
                   f"ON DUPLICATE KEY UPDATE "
                   + ", ".join(f"{prep.quote(x)} = VALUES({prep.quote(x)})" for x in others))
        for i in range(0, len(data), chunk):
            cur.executemany(sql, data[i:i + chunk])
            advance(len(data[i:i + chunk]))
    finally:
        cur.close()


def source_state(url: str, schema: str | None = None) -> dict | None:
    """How a demo source was made and how far it was advanced (seed, customers,
    applied_until), or None for an empty/new source."""
    engine = _engine(url)
    try:
        md = _metadata(schema)
        state = md.tables[f"{schema}.{STATE_TABLE}" if schema else STATE_TABLE]
        if not sa.inspect(engine).has_table(STATE_TABLE, schema=schema):
            return None
        with engine.connect() as conn:
            row = conn.execute(sa.select(state).where(state.c.id == 1)).mappings().first()
        if row is None:
            return None
        return {"seed": int(row["seed"]), "customers": int(row["customers"]),
                "applied_until": _as_date(row["applied_until"])}
    finally:
        engine.dispose()
