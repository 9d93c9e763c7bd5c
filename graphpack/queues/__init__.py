"""graphpack.queues"""
