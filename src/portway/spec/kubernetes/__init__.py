"""Kubernetes manifests in and out: pure translation between Kubernetes
objects (Pod, Deployment, StatefulSet, Service, ConfigMap, Secret) and portway
workloads, and validation against the official Kubernetes JSON schemas."""
