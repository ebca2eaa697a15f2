// Package systemd holds what runs runnerd as a systemd service on a VM or
// GPU host: runnerd.service, a hardened unit, and install.sh, which creates
// the service user, installs the binary, the environment file and the unit.
// The package has no code; its tests check the unit and the script.
package systemd
