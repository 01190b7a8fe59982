"""The demo world's vocabulary: names of people, companies and cities, industries,
contact titles, complaint wording and currencies, each a fixed pool the generators draw
from by index."""

from __future__ import annotations

#: Chinese surnames and given-name characters, with their pinyin (for mail addresses)
SURNAMES = [
    ("张", "zhang"), ("王", "wang"), ("李", "li"), ("刘", "liu"), ("陈", "chen"),
    ("杨", "yang"), ("黄", "huang"), ("赵", "zhao"), ("吴", "wu"), ("周", "zhou"),
    ("徐", "xu"), ("孙", "sun"), ("马", "ma"), ("朱", "zhu"), ("胡", "hu"),
    ("郭", "guo"), ("何", "he"), ("林", "lin"), ("高", "gao"), ("罗", "luo"),
    ("郑", "zheng"), ("梁", "liang"), ("谢", "xie"), ("宋", "song"),
]
GIVEN_NAMES = [
    ("伟", "wei"), ("芳", "fang"), ("娜", "na"), ("敏", "min"), ("静", "jing"),
    ("丽", "li"), ("强", "qiang"), ("磊", "lei"), ("军", "jun"), ("洋", "yang"),
    ("勇", "yong"), ("艳", "yan"), ("杰", "jie"), ("娟", "juan"), ("涛", "tao"),
    ("明", "ming"), ("超", "chao"), ("秀", "xiu"), ("霞", "xia"), ("平", "ping"),
    ("刚", "gang"), ("桂", "gui"), ("英", "ying"), ("华", "hua"), ("文", "wen"),
    ("辉", "hui"), ("建", "jian"), ("鑫", "xin"), ("宇", "yu"), ("婷", "ting"),
    ("浩", "hao"), ("晨", "chen"), ("欣", "xin"), ("雪", "xue"), ("博", "bo"),
    ("佳", "jia"), ("子", "zi"), ("思", "si"), ("颖", "ying"), ("琳", "lin"),
]
#: Western first and last names
LATIN_FIRST_NAMES = [
    "Emma", "Liam", "Olivia", "Noah", "Sophia", "Lucas", "Mia", "Leon", "Anna",
    "David", "Laura", "Thomas", "Sarah", "Daniel", "Julia", "Michael", "Chloe",
    "Marco", "Elena", "Peter", "Hannah", "James", "Claire", "Felix", "Nina",
    "Oliver", "Grace", "Samuel", "Lena", "Victor",
]
LATIN_LAST_NAMES = [
    "Smith", "Johnson", "Brown", "Miller", "Davis", "Wilson", "Taylor", "Schmidt",
    "Weber", "Fischer", "Martin", "Bernard", "Dubois", "Rossi", "Bianchi", "Garcia",
    "Lopez", "Novak", "Jansen", "Chan", "Wong", "Lee", "Cheung", "Ho", "Murphy",
    "Keller", "Moreau", "Visser", "Kowalski", "Larsen",
]

#: region → its cities: (city, pinyin, weight)
_CITIES_BY_REGION = {
    "North": [("北京", "beijing", 10), ("天津", "tianjin", 3), ("石家庄", "shijiazhuang", 1)],
    "East": [("上海", "shanghai", 10), ("杭州", "hangzhou", 5), ("南京", "nanjing", 4), ("苏州", "suzhou", 4),
             ("宁波", "ningbo", 2), ("合肥", "hefei", 2), ("青岛", "qingdao", 2), ("厦门", "xiamen", 2),
             ("济南", "jinan", 2)],
    "South": [("深圳", "shenzhen", 8), ("广州", "guangzhou", 7), ("东莞", "dongguan", 3)],
    "Central": [("武汉", "wuhan", 4), ("长沙", "changsha", 2), ("郑州", "zhengzhou", 2)],
    "Southwest": [("成都", "chengdu", 5), ("重庆", "chongqing", 3), ("昆明", "kunming", 1)],
    "Northwest": [("西安", "xian", 3), ("兰州", "lanzhou", 1)],
    "Northeast": [("沈阳", "shenyang", 2), ("大连", "dalian", 2), ("哈尔滨", "haerbin", 1)],
    "Hong Kong": [("香港", "hongkong", 3)],
}
#: city, pinyin, region, weight
CITIES = [(city, pinyin, region, weight)
          for region, cities in _CITIES_BY_REGION.items() for city, pinyin, weight in cities]
#: the index of Hong Kong in CITIES (its customers pay in HKD)
HONG_KONG_CITY = len(CITIES) - 1
#: Chinese words in company names, with their pinyin
COMPANY_WORDS = [
    ("星辰", "xingchen"), ("华信", "huaxin"), ("宏达", "hongda"), ("瑞丰", "ruifeng"),
    ("恒通", "hengtong"), ("博远", "boyuan"), ("嘉禾", "jiahe"), ("天成", "tiancheng"),
    ("中联", "zhonglian"), ("金桥", "jinqiao"), ("东方", "dongfang"), ("新元", "xinyuan"),
    ("汇智", "huizhi"), ("鼎盛", "dingsheng"), ("远航", "yuanhang"), ("云帆", "yunfan"),
    ("创达", "chuangda"), ("安泰", "antai"), ("永兴", "yongxing"), ("盛世", "shengshi"),
    ("海纳", "haina"), ("优联", "youlian"), ("锦程", "jincheng"), ("华光", "huaguang"),
    ("启明", "qiming"), ("凯德", "kaide"), ("润泽", "runze"), ("广源", "guangyuan"),
    ("联创", "lianchuang"), ("科达", "keda"), ("聚力", "juli"), ("同舟", "tongzhou"),
    ("长风", "changfeng"), ("明德", "mingde"), ("信达", "xinda"), ("海川", "haichuan"),
    ("万邦", "wanbang"), ("国盛", "guosheng"), ("普惠", "puhui"), ("青松", "qingsong"),
]
#: the first word of Western company names
LATIN_COMPANY_WORDS = [
    "Northwind", "Bluepeak", "Silverline", "Redwood", "Brightstone", "Harborview",
    "Summit", "Evergreen", "Ironbridge", "Lakeside", "Crescent", "Pioneer", "Atlas",
    "Orion", "Granite", "Meridian", "Keystone", "Sterling", "Horizon", "Vanguard",
]
#: industry, Chinese name part, English name part, weight
INDUSTRIES = [
    ("technology", "科技", "Systems", 18), ("manufacturing", "机械制造", "Industries", 20),
    ("retail", "商贸", "Trading", 14), ("logistics", "物流", "Logistics", 8),
    ("healthcare", "医疗器械", "Medical", 8), ("finance", "投资管理", "Capital", 5),
    ("education", "教育科技", "Learning", 5), ("construction", "建设工程", "Construction", 8),
    ("energy", "能源", "Energy", 6), ("food_beverage", "食品", "Foods", 8),
]
#: legal-form suffixes of Western-named companies, by their currency
LATIN_COMPANY_SUFFIXES = {
    "USD": ["Inc.", "LLC", "Corp."], "EUR": ["GmbH", "S.A.", "B.V.", "AG"],
    "HKD": ["Limited", "Holdings Limited"], "CNY": ["Co., Ltd."],
}
#: the top-level domain of a Western-named company's mail, by its currency
LATIN_MAIL_TLDS = {"USD": "com", "EUR": "eu", "HKD": "com.hk", "CNY": "com"}
ACCOUNT_MANAGERS = [
    "李娜", "王强", "陈静", "刘洋", "张敏", "杨磊", "赵丽", "黄涛", "周杰", "吴芳",
    "徐明", "孙婷", "马超", "朱华", "胡建", "郭欣", "Anna Weber", "David Chan",
    "Sophie Martin", "Michael Lee",
]
PRODUCT_CATEGORIES = ["hardware", "software", "services", "consumables", "spare_parts", "training"]
#: contact role → (Chinese titles, English titles)
TITLES = {
    "coach": (["采购专员", "采购经理", "商务对接人"],
              ["Procurement Specialist", "Purchasing Manager", "Vendor Relations Lead"]),
    "user": (["运维工程师", "生产主管", "仓库主管"],
             ["Operations Engineer", "Production Supervisor", "Warehouse Lead"]),
    "technical": (["技术总监", "IT经理", "质量经理"],
                  ["IT Manager", "Head of Engineering", "Quality Manager"]),
    "economic": (["总经理", "财务总监", "副总裁"], ["General Manager", "CFO", "Vice President"]),
}
PERSONAL_MAIL_DOMAINS = ["qq.com", "163.com", "126.com", "gmail.com", "outlook.com"]
#: prefixes of Chinese mobile numbers
MOBILE_PREFIXES = [
    130, 131, 132, 133, 135, 136, 137, 138, 139, 150, 151, 152, 153, 155, 156,
    157, 158, 159, 180, 181, 182, 183, 185, 186, 187, 188, 189,
]
COMPLAINT_CATEGORIES = ["delivery", "quality", "billing_dispute", "service", "product"]
COMPLAINT_CHANNELS = ["phone", "email", "wechat", "web", "on_site"]
COMPLAINT_DESCRIPTIONS = {
    "delivery": ["送货延迟，客户要求说明原因", "包裹破损，部分货物缺失", "物流信息长时间未更新"],
    "quality": ["产品存在质量缺陷，要求更换", "批次产品检验不合格", "使用一周后出现故障"],
    "billing_dispute": ["发票金额与合同不符", "重复收费，要求退款", "对逾期费用有异议"],
    "service": ["客服响应太慢", "上门服务未按约定时间到达", "客户经理长期联系不上"],
    "product": ["产品功能与宣传不符", "说明书不清楚，无法正常使用", "缺少所需的配件规格"],
}
#: approximate CNY per unit, only to give foreign-currency orders plausible magnitudes
FX_TO_CNY = {"CNY": 1.0, "USD": 7.2, "EUR": 7.8, "HKD": 0.92}
