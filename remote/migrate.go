package remote

import (
	"context"
	"fmt"
)

// Migrate upgrades a format 2 repository to format 3 in place and
// returns the version it had. Nothing but the config changes: the
// backups stored so far keep their manifests, which format 3 reads as
// they are (and which expire with the keep rules); pushes from then on
// store chunk trees. The config is replaced by one atomic save, so a
// crash leaves the repository at version 2 or 3, both whole; vmasync
// versions that read only format 2 then refuse the repository instead of
// misreading its new backups. The caller holds the exclusive lock. A
// format 1 repository stays at version 1 (its packs are named the
// version 1 way, which format 3 does not read): init a new one.
func (r *Repository) Migrate(ctx context.Context) (from int, err error) {
	from = r.Config.Version
	switch {
	case from == FormatVersion:
		return from, nil
	case from != 2:
		return from, fmt.Errorf("a format %d repository cannot be migrated to format %d: push into a new repository", from, FormatVersion)
	}
	c := *r.Config
	c.Version = FormatVersion
	if err := saveConfig(ctx, r.B, &c); err != nil {
		return from, fmt.Errorf("writing the config: %w", err)
	}
	n, err := Open(ctx, r.B)
	if err != nil {
		return from, fmt.Errorf("reading the config back: %w", err)
	}
	if n.Config.Version != FormatVersion || n.Config.ID != c.ID {
		return from, fmt.Errorf("the config reads back as version %d of repository %s", n.Config.Version, n.Config.ID)
	}
	r.Config = n.Config
	return from, nil
}
