"""graphpack.runtime"""
