"""graphpack.packager"""
