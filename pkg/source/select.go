package source

import (
	"maps"
	"slices"

	"github.com/dcherman/image-cache-daemon/pkg/wire"
)

// Select picks at most limit of the wanted images so that no tenant can
// starve another: the Static wants first, in order (the --image flag's
// images, and the daemon puts before them the images its pods hold while a
// source has not synced, which were cached within its limits); then the
// namespaces share what is left round-robin, in name order (cluster-scoped
// objects count as one more tenant, named ""); and within a namespace its
// objects share its turns round-robin, by origin, each object's images in
// the order its source gives them (an image list's own order). A turn whose
// image was taken already is spent, so each object is read at most as far
// as there are rounds. The rest is over, grouped by image as Images groups
// them. Time and memory are linear in the wants.
func Select(wants []Want, limit int) (keep []string, over []wire.Image) {
	taken := make(map[string]bool, min(len(wants), limit))
	take := func(img string) {
		if len(keep) < limit && !taken[img] {
			taken[img] = true
			keep = append(keep, img)
		}
	}
	byTenant := map[string]*tenantTurns{}
	for _, w := range wants {
		if w.Static {
			take(w.Image)
			continue
		}
		t := byTenant[w.Namespace]
		if t == nil {
			t = &tenantTurns{objects: map[string][]string{}}
			byTenant[w.Namespace] = t
		}
		t.objects[w.Origin] = append(t.objects[w.Origin], w.Image)
	}
	tenants := make([]*tenantTurns, 0, len(byTenant))
	for _, name := range slices.Sorted(maps.Keys(byTenant)) {
		t := byTenant[name]
		t.order = slices.Sorted(maps.Keys(t.objects))
		tenants = append(tenants, t)
	}
	for len(keep) < limit && len(tenants) > 0 {
		live := tenants[:0]
		for _, t := range tenants {
			if len(keep) == limit {
				break
			}
			if img, ok := t.next(); ok {
				take(img)
				live = append(live, t)
			}
		}
		tenants = live
	}
	var left []Want
	for _, w := range wants {
		if !taken[w.Image] {
			left = append(left, w)
		}
	}
	return keep, Images(left)
}

// tenantTurns hands out one namespace's images, its objects in turn.
type tenantTurns struct {
	objects map[string][]string
	order   []string // origins with images left, in name order
	at      int      // the origin whose turn is next
	round   int      // how many images each origin has given
}

// next is the tenant's next image; false when it has none left.
func (t *tenantTurns) next() (string, bool) {
	for len(t.order) > 0 {
		if t.at == len(t.order) {
			t.at, t.round = 0, t.round+1
			// Drop the origins that have given all their images.
			live := t.order[:0]
			for _, o := range t.order {
				if t.round < len(t.objects[o]) {
					live = append(live, o)
				}
			}
			t.order = live
			continue
		}
		list := t.objects[t.order[t.at]]
		t.at++
		if t.round < len(list) {
			return list[t.round], true
		}
	}
	return "", false
}
