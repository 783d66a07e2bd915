"""Demonstration data: the on-disk episode dataset every producer writes and every trainer reads
(``dataset``), the one image path of training data and live inference (``images``) and the
synthetic tabletop task (``synthetic``). numpy and OpenCV only: no torch."""
