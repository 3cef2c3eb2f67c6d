"""`action_human_handoff`: how to reach a person. The assistant never pretends to be one, and has no live-agent
queue to transfer to: the 12345 hotline's agents answer the phone around the clock (国办发〔2020〕53号 asks every
12345 hotline to be staffed 7×24), so that is where a citizen is sent."""
from __future__ import annotations

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType
from rasa_sdk.executor import CollectingDispatcher

HANDOFF = ("需要人工服务的话，请直接拨打12345政务服务便民热线，人工坐席7×24小时接听。"
           "如果情况紧急、涉及人身或财产安全，请立即拨打110、119或120。")


class ActionHumanHandoff(Action):
    def name(self) -> str:
        return "action_human_handoff"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[EventType]:
        dispatcher.utter_message(text=HANDOFF)
        return []
