"""graphpack.graph"""
