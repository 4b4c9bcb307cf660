"""Procedural 2-D physics videos (pymunk + PIL): training splits and the Physics-IQ-mini benchmark."""
