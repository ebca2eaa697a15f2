// Package fleettest runs a whole runfleet fleet as containers
// (infra/compose.yaml, from the images of package images) and proves it
// survives a runner cut off the network and a Redis restart. The test needs
// a Docker engine and docker compose (or docker-compose) and skips with a
// message where they are missing.
package fleettest
