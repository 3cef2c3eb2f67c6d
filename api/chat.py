"""The web chat widget's endpoint and page: relays the conversation to the Rasa assistant. (Being built.)"""
from fastapi import APIRouter

router = APIRouter(tags=["assistant"])
