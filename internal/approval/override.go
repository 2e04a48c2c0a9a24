package approval

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/regdr/regdr/internal/store"
)

// OverrideApprovers is how many operators must approve publishing a
// blocked zone version. The requester is the agent that blocked it, not a
// person, so both people sign.
const OverrideApprovers = 2

// ZoneOverride is the subject operators sign to let one blocked version
// out: the zone, its serial and its content digest, so an approval never
// covers a regenerated version under the same serial.
func ZoneOverride(b store.BlockedVersion) Subject {
	sum := sha256.Sum256(fmt.Appendf(nil, "zone-override v1\nzone %q\nserial %d\ndigest %q\n", b.Zone, b.Serial, b.Digest))
	return Subject{
		Kind:      KindZoneOverride,
		ID:        fmt.Sprintf("%s/%d", b.Zone, b.Serial),
		Digest:    hex.EncodeToString(sum[:]),
		Requester: "agent:" + b.Site,
		Expires:   b.Expires.UTC(),
	}
}
