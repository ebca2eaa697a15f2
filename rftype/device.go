package rftype

import (
	"strconv"
	"strings"
)

// Device is an accelerator (a GPU) a runner hands to one execution at a
// time. The same value travels in a runner's registration, in the worker
// protocol's execute message and in workflows.CurrentTask, so it is named
// once here.
type Device struct {
	// Index is the device's index as nvidia-smi numbers it.
	Index int `json:"index"`
	// UUID is the device's stable id ("GPU-…"); empty when the device was
	// given by index on a host where it could not be detected.
	UUID string `json:"uuid,omitempty"`
	// Name is the model, such as "NVIDIA A100-SXM4-80GB"; may be empty.
	Name string `json:"name,omitempty"`
	// MemoryMiB is the device's total memory; 0 when unknown.
	MemoryMiB int `json:"memory_mib,omitempty"`
}

// CUDAVisibleDevices is the value of CUDA_VISIBLE_DEVICES that limits a
// process to devs: their UUIDs where known (stable whatever order CUDA
// enumerates in), else their indexes. It is "" for no devices.
func CUDAVisibleDevices(devs []Device) string {
	var b strings.Builder
	for i, d := range devs {
		if i > 0 {
			b.WriteByte(',')
		}
		if d.UUID != "" {
			b.WriteString(d.UUID)
		} else {
			b.WriteString(strconv.Itoa(d.Index))
		}
	}
	return b.String()
}
