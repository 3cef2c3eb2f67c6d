"""Knowledge-base management over HTTP: add, modify, retire entries; the index follows without downtime. (Being built.)"""
from fastapi import APIRouter

router = APIRouter(prefix="/api/v1/kb", tags=["knowledge base"])
