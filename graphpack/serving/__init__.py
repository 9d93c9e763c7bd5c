"""graphpack.serving"""
