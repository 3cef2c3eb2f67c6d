"""The Rasa assistant's custom-action webhook, hosted in the app with rasa_sdk's ActionExecutor. (Being built.)"""
from fastapi import APIRouter

router = APIRouter(tags=["assistant"])
