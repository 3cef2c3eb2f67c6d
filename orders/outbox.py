"""Transactional outbox for department webhooks. (Being built.)"""
