"""The one catalogue of indicators: what each is called, measured in and means (口径), and the words officials use.

The API's listing and dispatch (api/routes/indicators.py), the assistant's generated NLU vocabulary
(assistant/generate.py) and, through GET /api/v1/indicators, the assistant's actions all read this table; nothing
else lists indicators. Each entry's computation lives beside it in measures.py, rankings.py, topics.py or alerts.py.

Words: `words` are precise (the NLU's regex extractor takes them wherever they occur, the action matches them);
`ambiguous` words are everyday words too ("超期" in "我的单子超期了", "投诉"), so the NLU only uses them as features
and the action lets any more specific word win. An entry that officials name has its label among its `words`.
"""
from __future__ import annotations

from dataclasses import dataclass

from nlp.lexicons import lexicons


@dataclass(frozen=True)
class Entry:
    name: str                           # the API's name: GET /api/v1/indicators/{name}
    label: str                          # the one Chinese label, in the listing, the NLU and the assistant's answers
    unit: str                           # 件 / 比例 / 小时 / 分钟 / 个 / 条
    kind: str                           # count / rate / average / ranking / list / group
    definition: str                     # 口径 in words
    higher_is_better: bool | None = None   # None: neither (lists, groups, the plain ranking)
    supports_by: bool = False           # ranked by a dimension with ?by= (computed per group by the same function)
    group: str | None = None            # the group answering it together with its siblings (on_time_rates, overdue)
    words: tuple[str, ...] = ()
    ambiguous: tuple[str, ...] = ()


DEF_COUNT = "期间内登记的工单数（不含协办子工单；同一事件合并办理的，每位来电人的工单各计一件）"
DEF_COMPLETION = "期间内登记（不含不予受理）的工单中已办结（含已回访、已归档）的比例；合并办理的同一事件按主办工单计一件"
DEF_TIMELY_BASIS = "期间内登记且已办结的工单（合并办理的同一事件按主办工单计一件），以最后一次派单时间到办结时间对照（延期后的）办理时限"
DEF_ON_TIME = DEF_TIMELY_BASIS + "：未超时限的比例（含提前、临期）"
DEF_EARLY = DEF_TIMELY_BASIS + "：用时不超过时限一半的比例"
DEF_DUE_SOON = DEF_TIMELY_BASIS + "：用时在时限80%–100%之间的比例"
DEF_OVERDUE = "期间内登记、当前仍未办结的工单中，已过办理时限的件数"
DEF_SEVERE = DEF_OVERDUE + "（超过时限一倍以上）"
DEF_HANDLING = "已办结工单从首次派单到办结的平均小时数"
DEF_DISPATCH_TIME = "从登记到首次派单的平均分钟数"
DEF_SATISFACTION = "回访评价中“满意”与“基本满意”的比例"
DEF_DISSATISFACTION = "回访评价中“不满意”的比例（与满意率同一分母）"
DEF_REOPEN = "曾办结的工单中被重办过的比例"
DEF_RETURNS = "期间内承办单位退单的次数，按单位排名；有责退单为退单中被认定有责的次数"
DEF_ACCURACY = "承办单位签收（而非退单或改派）的分拨决策占已有结果决策的比例"
DEF_AUTO = "已派单工单中首次派单为自动派单的比例"
DEF_REPEAT = "同一来电号码或微信用户在期间内第二件及以后的工单数"
DEF_RANKING = "期间内登记工单按维度计数，降序"

# Cosine similarity at which two complaints count as the same topic. On 5,000 orders made from the 长沙 KB examples
# in random streets, 0.3–0.6 all gave groups of one matter (0.4: 99.9% purity) and never a chained giant group.
SIMILARITY = 0.4
# The list indicators' default thresholds: the functions' defaults and the figures their 口径 below states.
HOT_TOPICS_DEFAULTS = {"similarity": SIMILARITY, "min_size": 3, "max_orders": 20_000}
HOT_AREAS_DEFAULTS = {"min_count": 5, "growth": 1.5}
ALERTS_DEFAULTS = {"overdue_working_days": 3, "open_days": 30, "cluster_size": 5, "cluster_hours": 24,
                   "cluster_similarity": SIMILARITY, "sensitive_tags": None}


def hot_topics_definition(*, similarity: float, min_size: int, max_orders: int) -> str:
    return (f"期间内登记的工单（不含协办子工单，最多取最近{max_orders}件），以脱敏后诉求文本的字符二元、三元组TF-IDF向量"
            f"计算余弦相似度，相似度≥{similarity}的两件工单相连，相连成组且不少于{min_size}件的即为一个热点话题，按件数"
            "降序；关键词取组内多件共有、其他工单少见的词，代表工单取最接近组中心的工单")


def hot_areas_definition(*, min_count: int, growth: float) -> str:
    return (f"期间内登记的工单（不含协办子工单）按街道（乡镇）及社区计数：本期不少于{min_count}件，且不少于上一个等长"
            f"周期的{growth}倍（上期为0视为上升）的区域为高发区域，按本期件数降序；分类为事项子类")


def alerts_definition(*, overdue_working_days: int, open_days: int, cluster_size: int, cluster_hours: float,
                      cluster_similarity: float, sensitive_tags: tuple[str, ...] | None) -> str:
    tags = "/".join(sensitive_tags or lexicons()["sensitive_tags"])
    return (f"期间内登记的工单（不含协办子工单）中：久而未决＝仍未办结且超过办理时限{overdue_working_days}个工作日以上，"
            f"或登记超过{open_days}天（严重超期或登记超过{2 * open_days}天为高）；群体高发＝同一街道{cluster_hours:g}小时内"
            f"不少于{cluster_size}件相似诉求（同一细类事项，或文本余弦相似度≥{cluster_similarity}），达到{2 * cluster_size}件"
            f"为高；敏感诉求＝仍未办结且带有{tags}标签（扬言、维稳为高）；城市体征＝全市或该区最新上报、未过期的体征"
            f"达到预警线（中）或告警线（高）。按严重程度排序")


# The order is the listing's: measures, the ranking, the lists, then the groups.
CATALOGUE: dict[str, Entry] = {e.name: e for e in [
    Entry("order_count", "工单数", "件", "count", DEF_COUNT, True, True,
          words=("工单数", "工单量", "诉求量", "诉求数", "诉求件数", "投诉量", "投诉件数", "投诉数量", "来电量", "受理量",
                 "登记量", "多少件", "几件", "多少单", "多少宗", "件数", "单量"),
          ambiguous=("数量", "多少个投诉", "投诉", "诉求", "工单", "反映", "举报", "来电")),
    Entry("completion_rate", "办结率", "比例", "rate", DEF_COMPLETION, True, True,
          words=("办结率", "办节率", "办洁率", "结案率", "办完率", "办结比例", "处理完成率"),
          ambiguous=("完成率", "办结情况")),
    Entry("on_time_rate", "按时办结率", "比例", "rate", DEF_ON_TIME, True, True, "on_time_rates",
          words=("按时办结率", "按期办结率", "及时办结率", "准时办结率", "按时完成率", "按时率", "及时率"),
          ambiguous=("按时办结",)),
    Entry("early_completion_rate", "提前办结率", "比例", "rate", DEF_EARLY, True, True, "on_time_rates",
          words=("提前办结率", "提前完成率"), ambiguous=("提前办结",)),
    Entry("due_soon_completion_rate", "临期办结率", "比例", "rate", DEF_DUE_SOON, False, True, "on_time_rates",
          words=("临期办结率", "临期率"), ambiguous=("临期办结",)),
    Entry("overdue_count", "超期件数", "件", "count", DEF_OVERDUE, False, True, "overdue",
          words=("超期件数", "超期工单", "超期件", "逾期件数", "逾期工单", "超时工单", "超期数量", "超期率"),
          ambiguous=("超期", "逾期", "超时", "过期未办")),
    Entry("severe_overdue_count", "严重超期件数", "件", "count", DEF_SEVERE, False, True, "overdue",
          words=("严重超期件数", "严重超期件", "严重超期", "严重逾期")),
    Entry("average_handling_hours", "平均处置时长", "小时", "average", DEF_HANDLING, False, True,
          words=("平均处置时长", "平均处理时长", "平均办理时长", "处置时长", "办理时长", "处理时长", "平均处理时间",
                 "平均办理时间", "办理用时"),
          ambiguous=("处置时间", "处理时间", "办理时间", "多久办完", "多长时间办完")),
    Entry("average_dispatch_minutes", "平均分拨时长", "分钟", "average", DEF_DISPATCH_TIME, False, True,
          words=("平均分拨时长", "平均派单时长", "分拨时长", "派单时长", "平均派单时间", "平均分拨时间", "分拨用时",
                 "派单用时"),
          ambiguous=("分拨时间", "派单时间", "多久派单")),
    Entry("satisfaction_rate", "满意率", "比例", "rate", DEF_SATISFACTION, True, True,
          words=("满意率", "满义率", "满意律", "satisfaction", "满意度", "好评率", "群众满意度", "回访满意率", "满意比例"),
          ambiguous=("满意情况",)),
    Entry("dissatisfaction_rate", "不满意率", "比例", "rate", DEF_DISSATISFACTION, False, True,
          words=("不满意率", "不满意比例", "差评率", "不满意占比"), ambiguous=("不满意",)),
    Entry("reopen_rate", "重办率", "比例", "rate", DEF_REOPEN, False, True,
          words=("重办率", "返工率", "重办比例", "重办件"), ambiguous=("重办",)),
    Entry("dispatch_accuracy", "分拨准确率", "比例", "rate", DEF_ACCURACY, True, True,
          words=("分拨准确率", "派单准确率", "一次派单准确率", "分派准确率", "派准率", "分拨正确率", "派单正确率"),
          ambiguous=("分拨准确", "派单准确")),
    Entry("auto_dispatch_rate", "自动分拨率", "比例", "rate", DEF_AUTO, True, True,
          words=("自动分拨率", "自动派单率", "智能派单率", "智能分拨率", "自动派单比例"), ambiguous=("自动分拨", "自动派单")),
    Entry("repeat_requests", "重复诉求件数", "件", "count", DEF_REPEAT, False, True,
          words=("重复诉求件数", "重复诉求", "重复投诉", "重复来电", "重复件", "重复工单"),
          ambiguous=("重复反映", "反复投诉")),
    Entry("return_ranking", "退单数", "件", "count", DEF_RETURNS, False,
          words=("退单数", "退单量", "退单排名", "退单次数", "有责退单", "退单率"), ambiguous=("退单", "退回", "被退")),
    Entry("ranking", "工单数排名", "件", "ranking", DEF_RANKING),
    Entry("hot_topics", "热点诉求", "个", "list", hot_topics_definition(**HOT_TOPICS_DEFAULTS),
          words=("热点诉求", "热点问题", "高频诉求", "热门诉求", "热门投诉", "热点投诉"),
          ambiguous=("热点", "热门", "热词", "集中反映")),
    Entry("hot_areas", "高发区域", "个", "list", hot_areas_definition(**HOT_AREAS_DEFAULTS),
          words=("高发区域", "高发地区", "高发地", "高发街道", "高发片区")),
    Entry("alerts", "预警", "条", "list", alerts_definition(**ALERTS_DEFAULTS),
          words=("预警", "预警信息", "预警事件", "高发预警", "告警")),
    Entry("on_time_rates", "按时/提前/临期办结率", "比例", "group", DEF_TIMELY_BASIS),
    Entry("overdue", "超期/严重超期件数", "件", "group", DEF_OVERDUE),
]}


def members(group: str) -> list[Entry]:
    """The indicators a group answers together, in catalogue order."""
    return [e for e in CATALOGUE.values() if e.group == group]


# What `by` ranks by, and what a ranking calls it.
DIMENSIONS = {"channel": "来源渠道", "category": "事项（大类/子类/细类）", "category1": "事项大类", "category2": "事项子类",
              "category3": "事项细类",
              "request_type": "诉求类型",
              "district": "区县", "street": "街道（乡镇）", "department": "承办单位", "day": "登记日期"}
CHANNEL_LABELS = {"hotline": "12345热线", "wechat": "微信公众号", "web": "网站", "open311": "Open311接口", "grid": "网格员上报",
                  "app": "移动应用", "sensor": "感知设备", "110": "110转办"}
