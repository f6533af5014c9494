"""Lip sync scored by SyncNet (Chung & Zisserman 2016; the ``syncnet_v2.model`` of joonson/syncnet_python): the data
preparation's sync filter, and the LSE-D / LSE-C metrics."""
