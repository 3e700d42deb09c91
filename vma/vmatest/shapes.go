package vmatest

import "github.com/vmasync/vmasync/vma"

// EFIDiskSize is the size of a Proxmox 4m EFI vars disk (528 KiB).
const EFIDiskSize = 540672

// TPMStateSize is the size of a Proxmox TPM state disk.
const TPMStateSize = 4 << 20

// Shapes returns the standard test shapes: small archives (a few MiB of
// disk each) covering one and several disks, small disks after a large
// one, sizes that are not multiples of 64 KiB, 4 KiB or 512 bytes, long
// zero runs, text, a vmstate device, no devices, an exact number of full
// extents, and 59 clusters per extent. Their Order is a suggestion; tests
// may run every shape in every order.
func Shapes() []NamedSpec {
	return []NamedSpec{
		{"one-disk", Spec{
			Disks: []Disk{{Name: "drive-scsi0", Size: 4 << 20}},
			Order: ProxmoxLike, PullForward: 0.02, Seed: 1,
		}},
		{"efi-scsi-tpm", Spec{
			Disks: []Disk{
				{Name: "drive-efidisk0", Size: EFIDiskSize, Content: Sparse},
				{Name: "drive-scsi0", Size: 6 << 20},
				{Name: "drive-tpmstate0-backup", Size: TPMStateSize, Content: Sparse},
			},
			Firewall: true,
			Order:    ProxmoxLike, PullForward: 0.02, Seed: 2,
		}},
		{"small-after-large", Spec{
			Disks: []Disk{
				{Name: "drive-scsi0", Size: 8 << 20},
				{Name: "drive-efidisk0", Size: EFIDiskSize},
				{Name: "drive-tpmstate0-backup", Size: TPMStateSize, Content: Sparse},
			},
			Order: ProxmoxLike, PullForward: 0.05, Seed: 3,
		}},
		{"unaligned", Spec{
			Disks: []Disk{
				{Name: "drive-scsi0", Size: 3<<20 + 100, Content: Random},
				{Name: "drive-scsi1", Size: 1<<20 + 12800, Content: Text},
				{Name: "drive-scsi2", Size: 1, Content: Random},
				{Name: "drive-scsi3", Size: vma.ClusterSize + 1, Content: Random},
				{Name: "drive-scsi4", Size: 3*vma.BlockSize + 511, Content: Mixed},
			},
			Order: ProxmoxLike, PullForward: 0.03, Seed: 4,
		}},
		{"zero-run", Spec{
			Disks: []Disk{{Name: "drive-virtio0", Size: 8 << 20, Content: ZeroRuns}},
			Order: ProxmoxLike, Seed: 5,
		}},
		{"text", Spec{
			Disks: []Disk{
				{Name: "drive-sata0", Size: 2 << 20, Content: Text},
				{Name: "drive-ide0", Size: 2<<20 + 512, Content: Random},
			},
			Order: CreateLike, Seed: 6,
		}},
		{"59-per-extent", Spec{
			Disks: []Disk{
				{Name: "drive-scsi0", Size: 5 << 20},
				{Name: "drive-efidisk0", Size: EFIDiskSize, Content: Sparse},
			},
			ClustersPerExtent: 59,
			Order:             ProxmoxLike, PullForward: 0.02, Seed: 7,
		}},
		{"vmstate", Spec{
			Disks: []Disk{
				{Name: "drive-scsi0", Size: 2 << 20},
				{Name: vma.VMStateName, Size: 1<<20 + 4096, Content: Random},
			},
			Order: ProxmoxLike, PullForward: 0.05, Seed: 8,
		}},
		{"no-devices", Spec{Seed: 9}},
		{"full-extents", Spec{
			Disks: []Disk{{Name: "drive-scsi0", Size: 2 * DefaultClustersPerExtent * vma.ClusterSize, Content: Sparse}},
			Order: ProxmoxLike, Seed: 10,
		}},
	}
}
