package runnerd

// AcceptDeployments exposes acceptDeployments to the tests.
var AcceptDeployments = acceptDeployments
