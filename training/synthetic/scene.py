"""Procedural street scenes and vectorised analytic ray casting (numpy only).

World frame: the optical frame of the rectified colour camera (image_02) at the first frame of
a drive: x right, y **down**, z forward (along the road), metres. The road is the plane
``y = cam_height`` (the camera is ``cam_height`` above it); "up" is ``-y``. The camera moves along
+z without rotating, so its optical frame at every frame is a pure translation of the world.

Primitives (all axis-aligned in the world frame):
    ground plane: road with lane markings, sidewalks with tiles, grass verges;
    boxes: building blocks (facades with windows), car bodies and cabins;
    vertical cylinders: poles and tree trunks; spheres: tree crowns;
    sky: rays that hit nothing (no depth).

Rays are cast in grids (camera pixels, LiDAR beam x azimuth). Each primitive is intersected only
with the rectangle of grid cells its bounding box can cover (exact for pinhole projections of
boxes, conservative for the LiDAR), which keeps a 1242 x 375 frame well under 0.1 s per core.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

EPS_T = 1e-3  # smallest accepted ray parameter (metres along a unit ray)

# Hit kinds stored per ray.
NONE, GROUND, BOX, CYLINDER, SPHERE = 0, 1, 2, 3, 4

# Box materials.
MAT_BUILDING, MAT_CAR, MAT_CABIN = 0, 1, 2
# Cylinder materials.
MAT_POLE, MAT_TRUNK = 0, 1

SUN_DIR = np.array([-0.45, -0.8, 0.4]) / np.linalg.norm([-0.45, -0.8, 0.4])  # towards the sun
HAZE_RGB = np.array([0.74, 0.8, 0.86])
TEX_RES = 4  # texels per noise-lattice unit
TEX_SIZE = 256 * TEX_RES


@dataclass
class StreetScene:
    """One drive's static world (world frame, metres; see the module docstring).

    Attributes:
        cam_height: camera height above the road, metres (KITTI: about 1.65).
        lane_width: width of one lane, metres; the ego lane is centred on x = 0.
        road_left, road_right: x of the road edges (kerbs), metres.
        sidewalk: sidewalk width beyond each kerb, metres.
        box_lo, box_hi: (Nb, 3) box corners; box_mat (Nb,) material; box_rgb (Nb, 3) albedo.
        cyl: (Nc, 5) x, z, radius, y_top, y_bottom; cyl_mat (Nc,); cyl_rgb (Nc, 3).
        sph: (Ns, 4) x, y, z, radius; sph_rgb (Ns, 3).
        noise: (256, 256) float32 value-noise lattice in [0, 1] for textures.
    """

    cam_height: float
    lane_width: float
    road_left: float
    road_right: float
    sidewalk: float
    box_lo: np.ndarray
    box_hi: np.ndarray
    box_mat: np.ndarray
    box_rgb: np.ndarray
    cyl: np.ndarray
    cyl_mat: np.ndarray
    cyl_rgb: np.ndarray
    sph: np.ndarray
    sph_rgb: np.ndarray
    noise: np.ndarray = field(repr=False)
    _tex: np.ndarray | None = field(default=None, repr=False)

    @property
    def tex(self) -> np.ndarray:
        """(1024, 1024) float32 two-octave noise baked from ``noise`` (4 texels per unit)."""
        if self._tex is None:
            g = np.arange(TEX_SIZE, dtype=np.float32) / TEX_RES
            u, v = np.meshgrid(g, g)
            self._tex = (0.6 * value_noise(self.noise, u, v)
                         + 0.4 * value_noise(self.noise, 2 * u + 17, 2 * v + 31))
        return self._tex

    @classmethod
    def empty(cls, cam_height: float = 1.65, seed: int = 0) -> 'StreetScene':
        """A scene with only the ground plane (for tests and calibration)."""
        rng = np.random.default_rng(seed)
        z3 = np.zeros((0, 3))
        return cls(cam_height, 3.5, -5.25, 3.95, 3.0, z3, z3, np.zeros(0, np.int64), z3,
                   np.zeros((0, 5)), np.zeros(0, np.int64), z3, np.zeros((0, 4)), z3,
                   rng.random((256, 256)).astype(np.float32))


def make_street_scene(rng: np.random.Generator, z_min: float, z_max: float,
                      cam_height: float = 1.65) -> StreetScene:
    """Random street covering ``z_min..z_max`` (metres along the road) around the ego lane."""
    lane = float(rng.uniform(3.2, 3.7))
    road_left = -1.5 * lane
    road_right = 0.5 * lane + float(rng.uniform(2.0, 2.6))  # parking strip on the right
    sidewalk = float(rng.uniform(2.0, 4.0))
    g = cam_height
    lo, hi, mat, rgb = [], [], [], []

    def add_box(b_lo, b_hi, m, colour):
        lo.append(b_lo)
        hi.append(b_hi)
        mat.append(m)
        rgb.append(colour)

    # Building blocks on both sides, with gaps (open sky / depth discontinuities).
    for side, kerb in ((-1, road_left), (1, road_right)):
        z = z_min
        line = abs(kerb) + sidewalk
        while z < z_max:
            length = rng.uniform(8.0, 28.0)
            if rng.random() < 0.2:
                z += rng.uniform(3.0, 12.0)
                continue
            setback = rng.uniform(0.0, 4.0)
            depth = rng.uniform(8.0, 16.0)
            height = rng.uniform(5.0, 22.0)
            x0, x1 = line + setback, line + setback + depth
            xs = (x0, x1) if side > 0 else (-x1, -x0)
            tone = rng.uniform(0.35, 0.8)
            tint = rng.uniform(0.85, 1.15, 3)
            add_box([xs[0], g - height, z], [xs[1], g, z + length], MAT_BUILDING,
                    np.clip(tone * tint, 0.05, 0.95))
            z += length

    # Cars: parked on the right strip and in the opposing lane.
    for x_centre, p in ((road_right - 1.1, 0.7), (-lane, 0.35)):
        z = z_min
        while z < z_max:
            z += rng.uniform(5.5, 14.0)
            if rng.random() > p:
                continue
            w, length = rng.uniform(1.65, 1.95), rng.uniform(3.8, 4.8)
            body_h, cab_h = rng.uniform(0.75, 0.95), rng.uniform(0.45, 0.6)
            colour = rng.choice([[0.7, 0.1, 0.1], [0.1, 0.2, 0.6], [0.85, 0.85, 0.85],
                                 [0.1, 0.1, 0.1], [0.5, 0.5, 0.55], [0.8, 0.7, 0.2]])
            colour = np.clip(np.asarray(colour) * rng.uniform(0.8, 1.2), 0.02, 0.95)
            xc = x_centre + rng.uniform(-0.25, 0.25)
            add_box([xc - w / 2, g - body_h - 0.12, z], [xc + w / 2, g - 0.12, z + length],
                    MAT_CAR, colour)
            add_box([xc - w / 2 + 0.1, g - body_h - 0.12 - cab_h, z + 0.25 * length],
                    [xc + w / 2 - 0.1, g - body_h - 0.12, z + 0.75 * length], MAT_CABIN, colour)
            z += length

    # Poles and trees on the sidewalks.
    cyl, cmat, crgb, sph, srgb = [], [], [], [], []
    for kerb in (road_left, road_right):
        sgn = np.sign(kerb)
        z = z_min + rng.uniform(0.0, 10.0)
        while z < z_max:
            if rng.random() < 0.45:
                r, h = rng.uniform(0.07, 0.15), rng.uniform(4.5, 8.0)
                cyl.append([kerb + sgn * 0.5, z, r, g - h, g])
                cmat.append(MAT_POLE)
                crgb.append(np.full(3, rng.uniform(0.35, 0.65)))
            else:
                r, h = rng.uniform(0.12, 0.25), rng.uniform(2.4, 3.6)
                x = kerb + sgn * rng.uniform(1.0, max(1.1, sidewalk - 0.8))
                cyl.append([x, z, r, g - h - 0.3, g])
                cmat.append(MAT_TRUNK)
                crgb.append([0.33, 0.24, 0.15])
                cr = rng.uniform(1.3, 2.6)
                sph.append([x, g - h - 0.6 * cr, z, cr])
                srgb.append([rng.uniform(0.12, 0.3), rng.uniform(0.3, 0.5),
                             rng.uniform(0.05, 0.15)])
            z += rng.uniform(8.0, 25.0)

    def arr(x, n):
        return np.asarray(x, np.float64).reshape(-1, n)

    noise = rng.random((256, 256)).astype(np.float32)
    return StreetScene(cam_height, lane, road_left, road_right, sidewalk,
                       arr(lo, 3), arr(hi, 3), np.asarray(mat, np.int64), arr(rgb, 3),
                       arr(cyl, 5), np.asarray(cmat, np.int64), arr(crgb, 3),
                       arr(sph, 4), arr(srgb, 3), noise)


class RayGrid:
    """A 2-D grid of rays from one origin (world frame).

    Attributes:
        origin: (3,) ray origin, metres.
        d: (3, R, C) float32 ray directions (x, y, z planes); not necessarily unit length.
    """

    origin: np.ndarray
    d: np.ndarray

    def _prepare(self) -> None:
        with np.errstate(divide='ignore'):
            self.inv = (1.0 / self.d).astype(np.float32)
        self.a_xz = self.d[0] * self.d[0] + self.d[2] * self.d[2]
        self.a_all = self.a_xz + self.d[1] * self.d[1]

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, columns) of the ray grid."""
        return self.d.shape[1:]

    def cells(self, lo: np.ndarray, hi: np.ndarray):
        """Index window ``(r0, r1, c0, c1)`` of rays that may hit box ``lo..hi``, or None."""
        raise NotImplementedError


class CameraRays(RayGrid):
    """Pinhole camera rays (no rotation w.r.t. the world); ``d`` has z = 1, so t = z-depth."""

    def __init__(self, K: np.ndarray, width: int, height: int, origin: np.ndarray):
        self.K = np.asarray(K, np.float64)
        self.width, self.height = int(width), int(height)
        self.origin = np.asarray(origin, np.float64)
        fx, fy, cx, cy = self.K[0, 0], self.K[1, 1], self.K[0, 2], self.K[1, 2]
        u = (np.arange(self.width) - cx) / fx
        v = (np.arange(self.height) - cy) / fy
        d = np.empty((3, self.height, self.width), np.float32)
        d[0] = u[None, :]
        d[1] = v[:, None]
        d[2] = 1.0
        self.d = d
        self._prepare()

    def cells(self, lo, hi, near: float = 0.05):
        """Ray indices that may hit the axis-aligned box [lo, hi] (world, m)."""
        lo = np.asarray(lo, np.float64) - self.origin
        hi = np.asarray(hi, np.float64) - self.origin
        if hi[2] <= near:
            return None
        lo = lo.copy()
        lo[2] = max(lo[2], near)
        xs = np.array([lo[0], hi[0]])[:, None]
        ys = np.array([lo[1], hi[1]])[:, None]
        zs = np.array([lo[2], hi[2]])[None, :]
        u = self.K[0, 0] * xs / zs + self.K[0, 2]
        v = self.K[1, 1] * ys / zs + self.K[1, 2]
        c0 = max(int(np.floor(u.min())), 0)
        c1 = min(int(np.ceil(u.max())) + 1, self.width)
        r0 = max(int(np.floor(v.min())), 0)
        r1 = min(int(np.ceil(v.max())) + 1, self.height)
        if c0 >= c1 or r0 >= r1:
            return None
        return r0, r1, c0, c1


@dataclass
class Hits:
    """Nearest hit per ray: t (R, C) float32 (inf = none), kind (R, C) int8, idx (R, C) int32."""

    t: np.ndarray
    kind: np.ndarray
    idx: np.ndarray


def _update(hits: Hits, win, t: np.ndarray, kind: int, index: int) -> None:
    r0, r1, c0, c1 = win
    tb = hits.t[r0:r1, c0:c1]
    m = t < tb
    tb[m] = t[m]
    hits.kind[r0:r1, c0:c1][m] = kind
    hits.idx[r0:r1, c0:c1][m] = index


def cast(scene: StreetScene, rays: RayGrid, max_range: float = 1e9) -> Hits:
    """Nearest intersection of every ray with the scene (ground, boxes, cylinders, spheres)."""
    R, C = rays.shape
    o = rays.origin
    hits = Hits(np.full((R, C), np.inf, np.float32), np.zeros((R, C), np.int8),
                np.full((R, C), -1, np.int32))
    dx, dy, dz = rays.d
    with np.errstate(divide='ignore', invalid='ignore'):
        t = ((scene.cam_height - o[1]) / dy).astype(np.float32)
    ok = (dy > 0) & (t > EPS_T)
    hits.t[ok] = t[ok]
    hits.kind[ok] = GROUND
    z_lo, z_hi = o[2] - max_range, o[2] + max_range

    def near(lo_z, hi_z):
        return np.nonzero((hi_z >= z_lo) & (lo_z <= z_hi))[0]

    inv = rays.inv
    for i in near(scene.box_lo[:, 2], scene.box_hi[:, 2]):
        lo, hi = scene.box_lo[i], scene.box_hi[i]
        win = rays.cells(lo, hi)
        if win is None:
            continue
        r0, r1, c0, c1 = win
        tmin = tmax = None
        with np.errstate(invalid='ignore'):
            for ax in range(3):
                iv = inv[ax, r0:r1, c0:c1]
                t1 = (lo[ax] - o[ax]) * iv
                t2 = (hi[ax] - o[ax]) * iv
                a, b = np.minimum(t1, t2), np.maximum(t1, t2)
                tmin = a if tmin is None else np.maximum(tmin, a)
                tmax = b if tmax is None else np.minimum(tmax, b)
            t = np.where((tmax >= tmin) & (tmin > EPS_T), tmin, np.float32(np.inf))
        _update(hits, win, t, BOX, i)

    cyl = scene.cyl
    for i in near(cyl[:, 1] - cyl[:, 2], cyl[:, 1] + cyl[:, 2]):
        x, z, r, y0, y1 = cyl[i]
        win = rays.cells(np.array([x - r, y0, z - r]), np.array([x + r, y1, z + r]))
        if win is None:
            continue
        r0, r1, c0, c1 = win
        ddx, ddy, ddz = dx[r0:r1, c0:c1], dy[r0:r1, c0:c1], dz[r0:r1, c0:c1]
        ox, oz = o[0] - x, o[2] - z
        a = rays.a_xz[r0:r1, c0:c1]
        b = ox * ddx + oz * ddz
        c = ox * ox + oz * oz - r * r
        disc = b * b - a * c
        with np.errstate(invalid='ignore', divide='ignore'):
            t = (-b - np.sqrt(disc)) / a
            y = o[1] + t * ddy
            t = np.where((disc >= 0) & (t > EPS_T) & (y >= y0) & (y <= y1), t,
                         np.float32(np.inf))
        _update(hits, win, t, CYLINDER, i)

    sph = scene.sph
    for i in near(sph[:, 2] - sph[:, 3], sph[:, 2] + sph[:, 3]):
        cx, cy, cz, r = sph[i]
        win = rays.cells(np.array([cx - r, cy - r, cz - r]), np.array([cx + r, cy + r, cz + r]))
        if win is None:
            continue
        r0, r1, c0, c1 = win
        oc = (o[0] - cx, o[1] - cy, o[2] - cz)
        b = oc[0] * dx[r0:r1, c0:c1] + oc[1] * dy[r0:r1, c0:c1] + oc[2] * dz[r0:r1, c0:c1]
        c = oc[0] ** 2 + oc[1] ** 2 + oc[2] ** 2 - r * r
        a = rays.a_all[r0:r1, c0:c1]
        disc = b * b - a * c
        with np.errstate(invalid='ignore', divide='ignore'):
            t = (-b - np.sqrt(disc)) / a
            t = np.where((disc >= 0) & (t > EPS_T), t, np.float32(np.inf))
        _update(hits, win, t, SPHERE, i)
    return hits


def value_noise(table: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Smooth value noise in [0, 1] at lattice coordinates (u, v) (wraps every 256 units)."""
    u = np.asarray(u, np.float32)
    v = np.asarray(v, np.float32)
    iu = np.floor(u)
    iv = np.floor(v)
    fu = u - iu
    fv = v - iv
    fu = fu * fu * (3 - 2 * fu)
    fv = fv * fv * (3 - 2 * fv)
    iu = iu.astype(np.int32) & 255
    iv = (iv.astype(np.int32) & 255) << 8
    iu1 = (iu + 1) & 255
    iv1 = (iv + 256) & 0xFF00
    flat = table.reshape(-1)
    top = flat.take(iv + iu)
    top += (flat.take(iv + iu1) - top) * fu
    bot = flat.take(iv1 + iu)
    bot += (flat.take(iv1 + iu1) - bot) * fu
    top += (bot - top) * fv
    return top


def tex_lookup(tex: np.ndarray, u, v) -> np.ndarray:
    """Nearest-texel lookup of a baked noise texture at lattice coordinates (u, v); [0, 1]."""
    iu = (np.asarray(u, np.float32) * np.float32(TEX_RES)).astype(np.int32) & (TEX_SIZE - 1)
    iv = (np.asarray(v, np.float32) * np.float32(TEX_RES)).astype(np.int32) & (TEX_SIZE - 1)
    return tex.reshape(-1).take(iu + iv * TEX_SIZE)


def _fmod(x, period: float):
    """x mod period in [0, period) (faster than np.mod for float32)."""
    return x - np.floor(x * np.float32(1.0 / period)) * np.float32(period)


def _flat(table, u, v):
    return np.full(np.shape(u), 0.5, np.float32)


def surface(scene: StreetScene, p, kind: np.ndarray, idx: np.ndarray, dirs=None,
            textured: bool = True):
    """Albedo (and, given ray directions, shading cosines) at hit points.

    Args:
        p: (px, py, pz) world hit coordinates, each (N,) float32, metres.
        kind, idx: (N,) hit kind and primitive index (from :func:`cast`).
        dirs: optional (dx, dy, dz) ray directions, each (N,) float32 (any length).
        textured: False skips the procedural noise (mean albedo; for LiDAR intensities).
    Returns:
        albedo (N, 3) float32 in [0, 1]; with ``dirs`` also cos_sun (N,) (surface normal
        dotted with the sun direction) and cos_view (N,) (|cos| between normal and ray).
    """
    px, py, pz = (np.asarray(c, np.float32) for c in p)
    n = len(px)
    albedo = np.zeros((n, 3), np.float32)
    shading = dirs is not None
    if shading:
        dx, dy, dz = (np.asarray(c, np.float32) for c in dirs)
        cos_sun = np.zeros(n, np.float32)
        cos_view = np.zeros(n, np.float32)
        inv_len = 1.0 / np.sqrt(dx * dx + dy * dy + dz * dz)
    sun = SUN_DIR.astype(np.float32)
    tab = scene.tex if textured else None
    g = np.float32(scene.cam_height)
    noise = tex_lookup if textured else _flat

    m = np.flatnonzero(kind == GROUND)
    if m.size:
        x, z = px.take(m), pz.take(m)
        grain = noise(tab, x * 3.0, z * 3.0)
        side = (x < scene.road_left) | (x > scene.road_right)
        kerb_dist = np.maximum(scene.road_left - x, x - scene.road_right)
        walk = side & (kerb_dist <= scene.sidewalk)
        lw = scene.lane_width
        marks = (np.abs(x + 0.5 * lw) < 0.08) & (_fmod(z, 9.0) < 3.0)  # centre dashes
        marks |= np.abs(x - 0.5 * lw) < 0.07  # parking strip line
        marks |= np.abs(x - (scene.road_left + 0.25)) < 0.08  # left edge line
        # Class per point: 0 asphalt, 1 sidewalk, 2 grass, 3 lane marking.
        cls = np.where(marks, 3, np.where(side, np.where(walk, 1, 2), 0))
        patch = noise(tab, x * 0.15 + 50.0, z * 0.15)
        tiles = (_fmod(z, 1.2) < 0.05) | (_fmod(x, 1.2) < 0.05)
        factor = np.where(cls == 0, 0.75 + 0.35 * grain * (0.7 + 0.6 * patch),
                          np.where(cls == 1, (0.85 + 0.25 * grain) * np.where(tiles, 0.72, 1.0),
                                   np.where(cls == 2, 0.6 + 0.8 * grain, 0.9 + 0.1 * grain)))
        base = np.array([[0.3, 0.3, 0.32], [0.62, 0.6, 0.56], [0.22, 0.4, 0.12],
                         [0.88, 0.88, 0.88]], np.float32)
        albedo[m] = base.take(cls, 0) * factor.astype(np.float32)[:, None]
        if shading:
            cos_sun[m] = -sun[1]
            cos_view[m] = np.abs(dy.take(m)) * inv_len.take(m)

    m = np.flatnonzero(kind == BOX)
    if m.size:
        i = idx.take(m)
        fi = i.astype(np.float32)
        q = (px.take(m), py.take(m), pz.take(m))
        lo32 = scene.box_lo.astype(np.float32)
        hi32 = scene.box_hi.astype(np.float32)
        dmin, sign = [], []
        for ax in range(3):
            d_lo = np.abs(q[ax] - lo32[:, ax].take(i))
            d_hi = np.abs(q[ax] - hi32[:, ax].take(i))
            dmin.append(np.minimum(d_lo, d_hi))
            sign.append(np.where(d_lo < d_hi, np.float32(-1), np.float32(1)))
        axis = np.where((dmin[0] <= dmin[1]) & (dmin[0] <= dmin[2]), 0,
                        np.where(dmin[1] <= dmin[2], 1, 2))
        s = np.where(axis == 0, q[2], q[0])  # along-facade coordinate, metres
        height = g - q[1]  # above the road, metres
        mat = scene.box_mat.take(i)
        vertical = axis != 1
        grain = noise(tab, s * 2.5 + 7.0 * fi, height * 2.5)
        hm = _fmod(height, 3.2)
        win = (mat == MAT_BUILDING) & vertical & (height > 1.2) & (hm > 1.0) & (hm < 2.6) \
            & (_fmod(s + 0.7 * fi, 3.1) > 0.9)
        factor = np.where(win, 0.7 + 1.2 * grain, 0.8 + 0.35 * grain)
        factor *= np.where((mat == MAT_CAR) & (height < 0.45) & vertical, 0.3, 1.0)
        base = scene.box_rgb.astype(np.float32).take(i, 0)
        base[win] = (0.12, 0.15, 0.2)
        base[(mat == MAT_CABIN) & vertical] = (0.08, 0.1, 0.13)
        albedo[m] = np.clip(base * factor.astype(np.float32)[:, None], 0, 1)
        if shading:
            sgn = np.where(axis == 0, sign[0], np.where(axis == 1, sign[1], sign[2]))
            cos_sun[m] = sgn * sun.take(axis)
            d_ax = np.where(axis == 0, dx.take(m), np.where(axis == 1, dy.take(m), dz.take(m)))
            cos_view[m] = np.abs(d_ax) * inv_len.take(m)

    m = np.flatnonzero(kind == CYLINDER)
    if m.size:
        i = idx.take(m)
        c = scene.cyl[i].astype(np.float32)
        rx, rz = (px.take(m) - c[:, 0]) / c[:, 2], (pz.take(m) - c[:, 1]) / c[:, 2]
        ang = np.arctan2(rz, rx)
        grain = noise(tab, ang * 3.0 + 11.0 * i, py.take(m) * 6.0)
        albedo[m] = scene.cyl_rgb[i] * (0.75 + 0.4 * grain)[:, None]
        if shading:
            cos_sun[m] = rx * sun[0] + rz * sun[2]
            cos_view[m] = np.abs(rx * dx.take(m) + rz * dz.take(m)) * inv_len.take(m)

    m = np.flatnonzero(kind == SPHERE)
    if m.size:
        i = idx.take(m)
        sp = scene.sph[i].astype(np.float32)
        nx = (px.take(m) - sp[:, 0]) / sp[:, 3]
        ny = (py.take(m) - sp[:, 1]) / sp[:, 3]
        nz = (pz.take(m) - sp[:, 2]) / sp[:, 3]
        grain = noise(tab, (px.take(m) + pz.take(m)) * 4.0, py.take(m) * 4.0 + 5.0 * i)
        albedo[m] = scene.sph_rgb[i] * (0.5 + 0.9 * grain)[:, None]
        if shading:
            cos_sun[m] = nx * sun[0] + ny * sun[1] + nz * sun[2]
            cos_view[m] = np.abs(nx * dx.take(m) + ny * dy.take(m) + nz * dz.take(m)) \
                * inv_len.take(m)
    albedo = np.clip(albedo, 0, 1)
    if shading:
        return albedo, cos_sun, cos_view
    return albedo


def render_camera(scene: StreetScene, rays: CameraRays) -> tuple[np.ndarray, np.ndarray]:
    """Render one camera frame.

    Returns:
        rgb: (H, W, 3) uint8; depth: (H, W) float32 z-depth in the camera frame, metres
        (inf where the ray hits nothing, i.e. sky).
    """
    hits = cast(scene, rays)
    H, W = rays.shape
    rgb = np.empty((H * W, 3), np.float32)
    t_all = hits.t.reshape(-1)
    hit = np.isfinite(t_all)
    d = rays.d.reshape(3, -1)
    # Sky: gradient by elevation plus soft clouds.
    sky_i = np.flatnonzero(~hit)
    if sky_i.size:
        dsx, dsy, dsz = d[0].take(sky_i), d[1].take(sky_i), d[2].take(sky_i)
        elev = np.sqrt(np.clip(-dsy / np.sqrt(dsx * dsx + dsy * dsy + dsz * dsz), 0.0, 1.0))
        elev = elev[:, None]
        sky = HAZE_RGB[None, :].astype(np.float32) * (1 - elev) \
            + np.array([0.3, 0.5, 0.85], np.float32)[None, :] * elev
        clouds = np.clip(tex_lookup(scene.tex, dsx * 6.0, dsy * 14.0) * 1.6 - 0.8, 0, 1)
        clouds = clouds[:, None]
        rgb[sky_i] = sky * (1 - 0.6 * clouds) + 0.57 * clouds
    hit_i = np.flatnonzero(hit)
    t = t_all.take(hit_i)
    dirs = (d[0].take(hit_i), d[1].take(hit_i), d[2].take(hit_i))
    o = rays.origin.astype(np.float32)
    p = tuple(o[k] + dirs[k] * t for k in range(3))
    albedo, cos_sun, cos_view = surface(scene, p, hits.kind.reshape(-1).take(hit_i),
                                        hits.idx.reshape(-1).take(hit_i), dirs)
    # Lambert + ambient; surfaces facing the camera look slightly brighter; distance haze.
    fog = 1 - np.exp(t * np.float32(-1 / 220.0))
    light = (0.42 + 0.5 * np.maximum(cos_sun, 0) + 0.12 * cos_view) * (1 - fog)
    col = albedo * light[:, None]
    col += HAZE_RGB.astype(np.float32)[None, :] * fog[:, None]
    rgb[hit_i] = col
    img = (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8).reshape(H, W, 3)
    return img, hits.t
