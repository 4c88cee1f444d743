"""active"""
