"""Hotline agents' suggest/confirm, department work queues, search and exports, department callbacks. (Being built.)"""
from fastapi import APIRouter

router = APIRouter(prefix="/api/v1", tags=["work"])
