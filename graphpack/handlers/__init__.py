"""graphpack.handlers"""
