"""Open311 GeoReport v2 (JSON) over the work-order service. (Being built.)"""
from fastapi import APIRouter

router = APIRouter(tags=["open311"])
