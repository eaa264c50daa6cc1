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

Camera (:func:`cast_camera`): the ray through pixel (row r, column c) is ``(u[c], v[r], 1)``, so
the ray parameter is the z-depth and each image column is a vertical plane of rays. A vertical
surface (box side, cylinder) is hit at one depth per column over a run of rows, a horizontal one
(road, box top) at one depth per row over a run of columns, and a box's near end at one depth over
a rectangle. These runs go straight into a depth buffer; only spheres need a per-pixel quadratic.
LiDAR (:func:`cast`): any grid of rays; slab tests for boxes, quadratics for cylinders and
spheres, each on the window of rays that the primitive's bounding box can cover.
"""
from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field

import cv2
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
TEX_RES = 4  # texels per noise-lattice unit of StreetScene.tex

# Surfaces. albedo = colour * (a + b * grain), grain the procedural noise in [0, 1] (0.5 when
# untextured). Road-plane classes first (by position on the plane, see ground_class), then the
# materials of the other primitives.
ASPHALT, SIDEWALK, JOINT, GRASS, MARKING = range(5)
WALL, ROOF, PAINT, GLASS, WINDOW, POLE, TRUNK, CROWN = range(5, 13)
SURF_AB = np.array([[0.75, 0.35], [0.85, 0.25], [0.61, 0.18], [0.6, 0.8], [0.9, 0.1],
                    [0.8, 0.35], [0.8, 0.35], [0.8, 0.35], [0.8, 0.35], [0.7, 1.2],
                    [0.75, 0.4], [0.75, 0.4], [0.5, 0.9]], np.float32)
GROUND_RGB = np.array([[0.3, 0.3, 0.32], [0.62, 0.6, 0.56], [0.62, 0.6, 0.56], [0.22, 0.4, 0.12],
                       [0.88, 0.88, 0.88]], np.float32)
GLASS_RGB = np.array([0.08, 0.1, 0.13], np.float32)
WINDOW_RGB = np.array([0.12, 0.15, 0.2], np.float32)
SILL_H, SILL_DARK = 0.45, 0.3  # car sides are darker below SILL_H metres (wheels, sills)
_SURF_LUT = np.zeros((2, 256), np.float32)  # SURF_AB for cv2.LUT
_SURF_LUT[:, :len(SURF_AB)] = SURF_AB.T
# Texture coordinate s along a surface: metres plus this offset per primitive index.
S_OFFSET = {BOX: 7.3, CYLINDER: 11.0, SPHERE: 5.0}
TEXELS_PER_M = 10.0  # texture scale on boxes, cylinders and spheres (road: 12)
TEX_PERIOD = 256 * TEX_RES  # texel period of every texture table (lookups are fastest within one)
FOG_M = 220.0  # haze: a fraction 1 - exp(-depth / FOG_M) of the colour is haze


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
        noise: (256, 256) float32 random lattice in [0, 1] for the textures (see ``tex``).
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
    _cache: dict = field(default_factory=dict, repr=False)  # sky images, road-class table

    @property
    def tex(self) -> np.ndarray:
        """(TEX_PERIOD, TEX_PERIOD) float32 periodic two-octave noise in [0, 1] from ``noise``.

        Octave 1: the lattice smoothly upsampled to TEX_RES texels per unit; octave 2: twice
        the frequency, shifted.
        """
        if self._tex is None:
            fine = np.tile(smooth_upsample(self.noise, TEX_RES // 2), (2, 2))
            self._tex = np.clip(0.6 * smooth_upsample(self.noise, TEX_RES)
                                + 0.4 * np.roll(fine, (-62, -34), (0, 1)), 0, 1)
        return self._tex

    def sky(self, cam: 'CameraRays') -> np.ndarray:
        """(H, W, 3) uint8 sky of ``cam``: a gradient by elevation plus clouds.

        It depends on the ray directions only, which a camera that never rotates keeps, so it is
        computed once per intrinsics and size.
        """
        key = ('sky', cam.width, cam.height) + tuple(cam.K.ravel().tolist())
        if key not in self._cache:
            u, v = cam.u[None, :], cam.v[:, None]
            elev = np.sqrt(np.clip(-v / np.sqrt(u * u + v * v + 1), 0.0, 1.0))
            clouds = tex_lookup(self.tex, u * (6.0 * TEX_RES), v * (14.0 * TEX_RES))
            clouds = np.clip(clouds * 1.6 - 0.8, 0, 1)
            self._cache[key] = cv2.merge([
                np.clip((h * (1 - elev) + b * elev) * (1 - 0.6 * clouds) + 0.57 * clouds, 0, 1)
                * 255 + 0.5 for h, b in zip(HAZE_RGB.tolist(), (0.3, 0.5, 0.85))]).astype(np.uint8)
        return self._cache[key]

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


# ---------------------------------------------------------------------------------------------
# Surfaces shared by the camera and the LiDAR


def smooth_upsample(lattice: np.ndarray, factor: int) -> np.ndarray:
    """Periodic bicubic upsampling of a square float32 lattice by an integer ``factor``."""
    n = lattice.shape[0]
    big = cv2.resize(np.pad(lattice, 2, mode='wrap'), ((n + 4) * factor,) * 2,
                     interpolation=cv2.INTER_CUBIC)
    return big[2 * factor:(n + 2) * factor, 2 * factor:(n + 2) * factor]


def tex_lookup(table: np.ndarray, x, y) -> np.ndarray:
    """Nearest texel of a 2-D ``table`` at texel coordinates x (column), y (row).

    x and y broadcast against each other; coordinates round half to even and wrap around the
    table. One ``cv2.remap`` call, which is fastest for coordinates within the table.
    """
    x, y = np.broadcast_arrays(np.asarray(x, np.float32), np.asarray(y, np.float32))
    if x.ndim == 2 and 0 < x.shape[1] < 4096:
        return cv2.remap(table, np.ascontiguousarray(x), np.ascontiguousarray(y),
                         cv2.INTER_NEAREST, borderMode=cv2.BORDER_WRAP)
    # Other shapes: as rows of 4096 (cv2 images are narrower than 32767 pixels).
    n = x.size
    if n == 0:
        return np.zeros(x.shape, table.dtype)
    maps = [np.zeros(-(-n // 4096) * 4096, np.float32) for _ in range(2)]
    for m, c in zip(maps, (x, y)):
        m[:n] = c.ravel()
    out = cv2.remap(table, maps[0].reshape(-1, 4096), maps[1].reshape(-1, 4096),
                    cv2.INTER_NEAREST, borderMode=cv2.BORDER_WRAP)
    return out.reshape(-1)[:n].reshape(x.shape)


def _fmod(x, period: float):
    """x mod period in [0, period) (faster than np.mod for float32)."""
    return x - np.floor(x * np.float32(1.0 / period)) * np.float32(period)


def _ground_lut(scene: StreetScene) -> tuple[np.ndarray, float]:
    """Road-plane classes by x at 1 cm (columns) for the four kinds of z (rows).

    Rows: +1 where the centre line is dashed at that z, +2 on a tile joint across the sidewalk.
    Returns (lut (4, n) uint8, x of column 0 in metres); the outermost columns are grass.
    """
    x0 = scene.road_left - scene.sidewalk - 1.0
    x = x0 + np.arange(int(round((scene.road_right + scene.sidewalk + 1.0 - x0) * 100)) + 1) / 100
    off_road = np.maximum(scene.road_left - x, x - scene.road_right)
    walk = (off_road > 0) & (off_road <= scene.sidewalk)
    lut = np.where(off_road <= 0, ASPHALT, np.where(walk, SIDEWALK, GRASS)).astype(np.uint8)
    lut = np.repeat(lut[None], 4, 0)
    lut[:, walk & (_fmod(x, 1.2) < 0.05)] = JOINT  # 1.2 m tiles
    lut[2:, walk] = JOINT
    lw = scene.lane_width
    lut[:, np.abs(x - 0.5 * lw) < 0.07] = MARKING  # parking strip line
    lut[:, np.abs(x - (scene.road_left + 0.25)) < 0.08] = MARKING  # left edge line
    lut[1::2, np.abs(x + 0.5 * lw) < 0.08] = MARKING  # centre line, 3 m dashes every 9 m
    return lut, x0


def ground_class(scene: StreetScene, x, z) -> np.ndarray:
    """Road-plane class (ASPHALT ... MARKING, uint8) at world x, z (metres; they broadcast)."""
    if 'ground_lut' not in scene._cache:
        scene._cache['ground_lut'] = _ground_lut(scene)
    lut, x0 = scene._cache['ground_lut']
    z = np.asarray(z, np.float32)
    kind = (_fmod(z, 9.0) < 3.0).astype(np.float32) + 2 * (_fmod(z, 1.2) < 0.05)
    col = (np.asarray(x, np.float32) - np.float32(x0)) * np.float32(100)
    return tex_lookup(lut, np.clip(col, 0, lut.shape[1] - 1, out=col), kind)


def _window_pattern() -> np.ndarray:
    """(TEX_PERIOD, TEX_PERIOD) uint8 window panes by (height, along-facade) texel.

    TEXELS_PER_M texels per metre: panes about 1.0 to 2.6 m up each 3.2 m storey above 1.2 m,
    2.2 m wide every 3.2 m.
    """
    h = np.arange(TEX_PERIOD)[:, None]
    s = np.arange(TEX_PERIOD)[None, :]
    return ((h > 12) & (h % 32 > 10) & (h % 32 < 26) & (s % 32 > 9)).astype(np.uint8)


WINDOW_PATTERN = _window_pattern()


def window_mask(s, height) -> np.ndarray:
    """Window panes on a facade at along-facade ``s`` and ``height`` above the road (texels)."""
    return tex_lookup(WINDOW_PATTERN, s, height).view(bool)


def _cylinder_boxes(cyl: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bounding boxes (lo, hi), each (Nc, 3) metres, of cylinders ``cyl`` (see StreetScene)."""
    x, z, r, y0, y1 = cyl.T
    return np.stack([x - r, y0, z - r], 1), np.stack([x + r, y1, z + r], 1)


def _light(cos_sun, cos_view):
    """Lambert + ambient; surfaces facing the camera look slightly brighter."""
    return 0.42 + 0.5 * np.maximum(cos_sun, 0) + 0.12 * cos_view


def _box_surface(scene: StreetScene, i: int, axis: int) -> tuple[int, np.ndarray]:
    """(surface, colour) of the face of box ``i`` normal to ``axis`` (1 = top/bottom)."""
    mat = scene.box_mat[i]
    if mat == MAT_BUILDING:
        return (ROOF if axis == 1 else WALL), scene.box_rgb[i]
    if mat == MAT_CABIN and axis != 1:
        return GLASS, GLASS_RGB
    return PAINT, scene.box_rgb[i]


def point_albedo(scene: StreetScene, kind: np.ndarray, idx: np.ndarray, p) -> np.ndarray:
    """Untextured grey albedo (mean over r, g, b) at hit points, e.g. for LiDAR intensities.

    Args:
        kind, idx: (N,) hit kind and primitive index (from :func:`cast`).
        p: (px, py, pz) world hit coordinates, each (N,), metres.
    Returns:
        (N,) float32, colour * (a + b / 2) of the surface (see SURF_AB); up to about 1.3.
    """
    px, py, pz = (np.asarray(c, np.float64) for c in p)
    flat = SURF_AB[:, 0] + 0.5 * SURF_AB[:, 1]
    out = np.zeros(len(px), np.float32)

    m = np.flatnonzero(kind == GROUND)
    out[m] = (GROUND_RGB.mean(1) * flat[:5]).take(ground_class(scene, px.take(m), pz.take(m)))

    m = np.flatnonzero(kind == BOX)
    if m.size:
        i = idx.take(m)
        q = (px.take(m), py.take(m), pz.take(m))
        # The face hit is the one whose plane the point is closest to.
        dist = [np.minimum(np.abs(q[ax] - scene.box_lo[:, ax].take(i)),
                           np.abs(q[ax] - scene.box_hi[:, ax].take(i))) for ax in range(3)]
        x_face = (dist[0] <= dist[1]) & (dist[0] <= dist[2])
        vertical = x_face | (dist[2] < dist[1])
        mat = scene.box_mat.take(i)
        surf = np.where(mat == MAT_BUILDING, np.where(vertical, WALL, ROOF), PAINT)
        grey = scene.box_rgb.mean(1).take(i).astype(np.float32)
        glass = (mat == MAT_CABIN) & vertical
        surf[glass] = GLASS
        grey[glass] = GLASS_RGB.mean()
        s = np.where(x_face, q[2], q[0]) + S_OFFSET[BOX] * i  # as in cast_camera
        height = scene.cam_height - q[1]
        win = (surf == WALL) & window_mask(s * TEXELS_PER_M, height * TEXELS_PER_M)
        surf[win] = WINDOW
        grey[win] = WINDOW_RGB.mean()
        grey *= flat.take(surf)
        grey[(surf == PAINT) & (height < SILL_H)] *= SILL_DARK
        out[m] = grey

    m = np.flatnonzero(kind == CYLINDER)
    i = idx.take(m)
    out[m] = scene.cyl_rgb.mean(1).take(i) * np.where(scene.cyl_mat.take(i) == MAT_POLE,
                                                      flat[POLE], flat[TRUNK])
    m = np.flatnonzero(kind == SPHERE)
    out[m] = scene.sph_rgb.mean(1).take(idx.take(m)) * flat[CROWN]
    return out


# ---------------------------------------------------------------------------------------------
# Camera


class CameraRays:
    """Pinhole rays of the colour camera at ``origin``, not rotated w.r.t. the world.

    The ray through pixel (row r, column c) is ``(u[c], v[r], 1)``, so its parameter is the
    z-depth in the camera frame.

    Attributes:
        K: (3, 3) intrinsics, pixels. width, height: image size, pixels.
        origin: (3,) camera centre, world frame, metres.
        u: (width,) float32 x / z per column; v: (height,) float32 y / z per row (ascending).
    """

    def __init__(self, K: np.ndarray, width: int, height: int, origin: np.ndarray):
        self.K = np.asarray(K, np.float64)
        self.width, self.height = int(width), int(height)
        self.origin = np.asarray(origin, np.float64)
        fx, fy, cx, cy = self.K[0, 0], self.K[1, 1], self.K[0, 2], self.K[1, 2]
        self.u = ((np.arange(self.width) - cx) / fx).astype(np.float32)
        self.v = ((np.arange(self.height) - cy) / fy).astype(np.float32)

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, columns) of the image."""
        return self.height, self.width

    def windows(self, lo: np.ndarray, hi: np.ndarray, near: float = 0.05) -> np.ndarray:
        """Pixel ranges [r0, r1) x [c0, c1), (N, 4), that may see boxes ``lo..hi`` (N, 3), m.

        The projection of the box's corners (clipped to ``near`` metres in front of the camera);
        a window is empty (r0 >= r1 or c0 >= c1) for a box behind the camera.
        """
        lo = np.asarray(lo, np.float64) - self.origin
        hi = np.asarray(hi, np.float64) - self.origin
        zs = np.stack([np.maximum(lo[:, 2], near), np.maximum(hi[:, 2], near)], 1)[:, None, :]
        u = self.K[0, 0] * np.stack([lo[:, 0], hi[:, 0]], 1)[:, :, None] / zs + self.K[0, 2]
        v = self.K[1, 1] * np.stack([lo[:, 1], hi[:, 1]], 1)[:, :, None] / zs + self.K[1, 2]
        win = np.stack([np.floor(v.min((1, 2))), np.ceil(v.max((1, 2))) + 1,
                        np.floor(u.min((1, 2))), np.ceil(u.max((1, 2))) + 1], 1)
        win = np.clip(win, 0, [self.height] * 2 + [self.width] * 2).astype(np.int64)
        win[hi[:, 2] <= near, 1] = 0
        return win


@dataclass
class CameraHits:
    """Nearest surface per pixel of a camera frame (all per-pixel arrays are (H, W)).

    Attributes:
        t: float32 z-depth, metres (inf: sky).
        face: int32 row of the face tables (0: sky, 1: road plane, then one per surface).
        s: float32 texture coordinate along the surface, texels (TEXELS_PER_M per metre on
            boxes; from an offset per primitive).
        light: float32 sun + ambient + view term of the surface, before haze.
        face_surf: (F,) uint8 surface (WALL ... CROWN) per face; face_rgb: (F, 3) colour.
    """

    t: np.ndarray
    face: np.ndarray
    s: np.ndarray
    light: np.ndarray
    face_surf: np.ndarray
    face_rgb: np.ndarray


def _zwrite(bufs, win, t, mask, vals) -> None:
    """Keep the nearer hit: write depth ``t`` and ``vals`` into window ``win`` of ``bufs``.

    ``bufs`` = (depth, *others) frame buffers; ``t``, ``mask`` (None: all) and each of ``vals``
    broadcast to the window. Non-finite ``t`` never wins.
    """
    tb = bufs[0][win]
    m = t < tb
    if mask is not None:
        m &= mask
    np.copyto(tb, t, where=m)
    for buf, val in zip(bufs[1:], vals):
        np.copyto(buf[win], val, where=m)


def _runs(bufs, slopes, o_ext, lo, hi, l0, t_line, vals) -> None:
    """Z-buffer a surface hit at depth ``t_line[j]`` along buffer line ``l0 + j``.

    Buffers are indexed [extent, line]: image columns are lines for vertical surfaces (pass the
    buffers as they are), image rows for horizontal ones (pass transposed views). Along a line
    the surface covers the rays whose world coordinate ``o_ext + t * slope`` (y for columns, x
    for rows) lies in [lo, hi] metres; ``slopes`` (ascending) are the rays' v or u.
    ``t_line`` (n,) float32: NaN or <= EPS_T for lines that miss; ``vals``: per line or scalar.
    """
    with np.errstate(invalid='ignore', divide='ignore'):
        e0 = np.searchsorted(slopes, (lo - o_ext) / t_line, 'left')
        e1 = np.searchsorted(slopes, (hi - o_ext) / t_line, 'right')
        e1[~(t_line > EPS_T)] = 0
    hit = e1 > e0
    if not hit.any():
        return
    a, b = int(e0[hit].min()), int(e1.max())
    k = np.arange(a, b)[:, None]
    _zwrite(bufs, (slice(a, b), slice(l0, l0 + len(t_line))), t_line, (k >= e0) & (k < e1),
            vals)


def cast_camera(scene: StreetScene, cam: CameraRays) -> CameraHits:
    """Nearest surface, depth, texture coordinate and lighting of every pixel (exact rays)."""
    H, W = cam.shape
    u, v = cam.u, cam.v
    u_list, v_list = u.tolist(), v.tolist()
    ox, oy, oz = o = [float(c) for c in cam.origin]
    sun = [float(c) for c in SUN_DIR]
    # Light of a box face with outward normal (axis, sign), per column (x and z normals) or row
    # (y normals); the view term is |cos(normal, ray)| in the ray's column or row plane.
    cos_view = (np.abs(u) / np.sqrt(u * u + 1), np.abs(v) / np.sqrt(v * v + 1),
                1 / np.sqrt(u * u + 1))
    face_light = {(ax, sign): _light(sign * sun[ax], cos_view[ax])
                  for ax in range(3) for sign in (-1, 1)}
    t = np.full((H, W), np.inf, np.float32)
    face = np.zeros((H, W), np.int32)
    s = np.zeros((H, W), np.float32)
    light = np.zeros((H, W), np.float32)
    bufs = (t, face, s, light)
    bufs_t = tuple(b.T for b in bufs)  # rows as lines (horizontal surfaces)
    surf, rgb = [0, 0], [np.zeros(3), np.zeros(3)]  # sky, road plane (class per pixel)

    h = scene.cam_height - oy
    if h > 0:  # road plane: one depth per row below the horizon
        r0 = bisect_right(v_list, 0.0)
        t[r0:] = (h / v[r0:])[:, None]
        face[r0:] = 1
        light[r0:] = face_light[1, -1][r0:, None]

    # Surfaces nearest first, so that farther ones mostly find their pixels taken:
    # (nearest depth, kind, primitive, axis of a box face).
    todo = []
    lo_a, hi_a = scene.box_lo, scene.box_hi
    t_lo = np.maximum(lo_a[:, 2] - oz, EPS_T)
    ahead = hi_a[:, 2] - oz > t_lo
    for ax in range(3):
        if ax == 2:  # only a near end in front of the camera faces it
            near = lo_a[:, 2] - oz
            facing = ahead & (near > EPS_T)
        else:
            near = t_lo
            facing = ahead & ((o[ax] < lo_a[:, ax]) | (o[ax] > hi_a[:, ax]))
        todo += [(d, BOX, i, ax) for i, d in zip(np.flatnonzero(facing).tolist(),
                                                 near[facing].tolist())]
    cyl, sph = scene.cyl, scene.sph
    cyl_win = cam.windows(*_cylinder_boxes(cyl))
    sph_win = cam.windows(sph[:, :3] - sph[:, 3:], sph[:, :3] + sph[:, 3:])
    for kind, win, near in ((CYLINDER, cyl_win, cyl[:, 1] - cyl[:, 2] - oz),
                            (SPHERE, sph_win, sph[:, 2] - sph[:, 3] - oz)):
        ok = (win[:, 1] > win[:, 0]) & (win[:, 3] > win[:, 2])
        todo += [(d, kind, i, -1) for i, d in zip(np.flatnonzero(ok).tolist(), near[ok].tolist())]
    todo.sort()

    box_lo, box_hi = lo_a.tolist(), hi_a.tolist()
    for near, kind, i, ax in todo:
        fid = len(surf)
        if kind == BOX:
            lo, hi = box_lo[i], box_hi[i]
            surface, colour = _box_surface(scene, i, ax)
            plane, sign = (lo[ax], -1) if o[ax] < lo[ax] else (hi[ax], 1)
            d = plane - o[ax]  # signed distance to the face's plane, metres
            lit, off = face_light[ax, sign], S_OFFSET[BOX] * i
            if ax == 2:  # near end: a rectangle at one depth
                c0, c1 = _span(u_list, (lo[0] - ox) / d, (hi[0] - ox) / d)
                r0, r1 = _span(v_list, (lo[1] - oy) / d, (hi[1] - oy) / d)
                if c1 > c0 and r1 > r0:
                    _zwrite(bufs, (slice(r0, r1), slice(c0, c1)), np.float32(d), None,
                            (fid, _texels(ox + off + d * u[c0:c1]), lit[c0:c1]))
            elif ax == 0:  # side: one depth per column
                c0, c1 = _span(u_list, d / (hi[2] - oz), d / near)
                if c1 > c0:
                    tc = (d / u[c0:c1]).astype(np.float32)
                    _runs(bufs, v, oy, lo[1], hi[1], c0, tc,
                          (fid, _texels(oz + off + tc), lit[c0:c1]))
            else:  # top or bottom: one depth per row
                r0, r1 = _span(v_list, d / (hi[2] - oz), d / near)
                if r1 > r0:
                    tr = (d / v[r0:r1]).astype(np.float32)
                    _runs(bufs_t, u, ox, lo[0], hi[0], r0, tr,
                          (fid, _texels(oz + off + tr), lit[r0:r1]))
        elif kind == CYLINDER:
            # Quadratic in the numerically stable form disc = |d|^2 r^2 - |(o - c) x d|^2.
            x, z, r, y0, y1 = cyl[i].tolist()
            surface = POLE if scene.cyl_mat[i] == MAT_POLE else TRUNK
            colour = scene.cyl_rgb[i]
            c0, c1 = cyl_win[i, 2:]
            uc = u[c0:c1].astype(np.float64)
            px, pz = ox - x, oz - z
            a = uc * uc + 1
            with np.errstate(invalid='ignore'):
                root = np.sqrt(a * (r * r) - (px - pz * uc) ** 2)  # NaN: the ray misses
            tc = (-(px * uc + pz) - root) / a
            nx, nz = (px + tc * uc) / r, (pz + tc) / r  # unit normal at the hit
            s_col = _texels(np.arctan2(nz, nx) * 1.2 + S_OFFSET[CYLINDER] * i)
            _runs(bufs, v, oy, y0, y1, c0, tc.astype(np.float32),
                  (fid, s_col, _light(nx * sun[0] + nz * sun[2], root / (r * np.sqrt(a)))))
        else:
            surface, colour = CROWN, scene.sph_rgb[i]
            r0, r1, c0, c1 = sph_win[i]
            cx, cy, cz, r = sph[i].tolist()
            px, py, pz = ox - cx, oy - cy, oz - cz
            uc, vr = u[c0:c1], v[r0:r1, None]
            a = (uc * uc + 1) + vr * vr
            # (o - centre) x d = (py - pz v, pz u - px, px v - py u)
            disc = ((r * r) * (uc * uc + 1) - (pz * uc - px) ** 2) \
                + ((r * r) * vr * vr - (py - pz * vr) ** 2) - (px * vr - py * uc) ** 2
            with np.errstate(invalid='ignore'):
                root = np.sqrt(disc)  # NaN: the ray misses
            ts = (-(px * uc + pz) - py * vr - root) / a
            cos_sun = ((px * sun[0] + py * sun[1] + pz * sun[2])
                       + ts * ((sun[0] * uc + sun[2]) + sun[1] * vr)) * (1 / r)
            _zwrite(bufs, (slice(r0, r1), slice(c0, c1)), ts, ts > EPS_T,
                    (fid, (px + pz + ts * (uc + 1)) * 16 + _texels(S_OFFSET[SPHERE] * i),
                     _light(cos_sun, root / (r * np.sqrt(a)))))
        surf.append(surface)
        rgb.append(colour)
    return CameraHits(t, face, s, light, np.asarray(surf, np.uint8),
                      np.asarray(rgb, np.float32).reshape(-1, 3))


def _texels(s_m):
    """Texture coordinate along a surface: metres -> texels, wrapped into one TEX_PERIOD."""
    return np.mod(np.multiply(s_m, TEXELS_PER_M), TEX_PERIOD)


def _span(slopes: list, a: float, b: float) -> tuple[int, int]:
    """Index range of the ascending ``slopes`` within [min(a, b), max(a, b)]."""
    return bisect_left(slopes, min(a, b)), bisect_right(slopes, max(a, b))


def render_camera(scene: StreetScene, rays: CameraRays) -> tuple[np.ndarray, np.ndarray]:
    """Render one camera frame.

    Returns:
        rgb: (H, W, 3) uint8; depth: (H, W) float32 z-depth in the camera frame, metres
        (inf where the ray hits nothing, i.e. sky).
    """
    hits = cast_camera(scene, rays)
    u, v = rays.u, rays.v
    ox, oy, oz = (float(c) for c in rays.origin)
    t = np.minimum(hits.t, np.float32(2e3))  # finite stand-in for the sky (drawn separately)
    height = np.float32((scene.cam_height - oy) * TEXELS_PER_M) \
        - t * (v * np.float32(TEXELS_PER_M))[:, None]  # above the road, texels
    np.minimum(height, np.float32(TEX_PERIOD - 1), out=height)  # (only the sky reaches it)
    grain = tex_lookup(scene.tex, hits.s, height)
    # Per pixel: surface (road classes, WINDOW, ...) and colour index into a palette of the
    # faces' colours, then the road classes' and the window colour.
    n_face = len(hits.face_surf)
    pal = np.concatenate([hits.face_rgb, GROUND_RGB, WINDOW_RGB[None]])
    surf = hits.face_surf.take(hits.face)
    cid = hits.face.copy()
    win = (surf == WALL) & window_mask(hits.s, height)
    np.copyto(surf, WINDOW, where=win)
    np.copyto(cid, len(pal) - 1, where=win)
    sill = (surf == PAINT) & (height < np.float32(SILL_H * TEXELS_PER_M))
    h = scene.cam_height - oy
    if h > 0:  # road plane, computed on the rows below the horizon
        r0 = bisect_right(v.tolist(), 0.0)
        tr = (h / v[r0:])[:, None]
        x, z = ox + tr * u, oz + tr
        on_road = hits.face[r0:] == 1
        cls = ground_class(scene, x, z)
        np.copyto(surf[r0:], cls, where=on_road)
        np.copyto(cid[r0:], cls + np.int32(n_face), where=on_road)
        # Grain at 12 texels per metre, times patches at 0.6 per metre.
        road = tex_lookup(scene.tex, x * np.float32(12) + 512, np.mod(z * 12, TEX_PERIOD))
        road *= 0.7 + 0.6 * tex_lookup(scene.tex, x * np.float32(0.6) + 512,
                                       np.mod(z * 0.6, TEX_PERIOD))
        np.copyto(grain[r0:], road, where=on_road)
    albedo = cv2.LUT(surf, _SURF_LUT[:1]) + cv2.LUT(surf, _SURF_LUT[1:]) * grain
    np.multiply(albedo, np.float32(SILL_DARK), out=albedo, where=sill)
    # Distance haze: a fraction 1 - exp(-t / FOG_M) of the colour is haze.
    clear = np.exp(t * np.float32(-1 / FOG_M))
    shade = albedo * hits.light * clear * np.float32(255)
    haze = np.float32(255) - clear * np.float32(255)
    img = cv2.merge([pal[:, k].take(cid) * shade + haze * np.float32(HAZE_RGB[k])
                     for k in range(3)])
    img = cv2.convertScaleAbs(img)  # rounds and saturates to uint8
    cv2.copyTo(scene.sky(rays), (hits.face == 0).view(np.uint8), img)
    return img, hits.t


# ---------------------------------------------------------------------------------------------
# General ray grids (LiDAR)


class RayGrid:
    """A 2-D grid of rays from one origin (world frame), for :func:`cast`.

    Attributes:
        origin: (3,) ray origin, metres.
        d: (3, R, C) float32 ray directions (x, y, z planes); not necessarily unit length.
        inv: (3, R, C) float32 1 / d; a_xz: (R, C) dx^2 + dz^2; a_all: (R, C) |d|^2.
    """

    origin: np.ndarray
    d: np.ndarray
    inv: np.ndarray
    a_xz: np.ndarray
    a_all: np.ndarray

    @staticmethod
    def terms(d: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(inv, a_xz, a_all) of ray directions ``d`` (see the class attributes)."""
        with np.errstate(divide='ignore'):
            inv = (1.0 / d).astype(np.float32)
        a_xz = d[0] * d[0] + d[2] * d[2]
        return inv, a_xz, a_xz + d[1] * d[1]

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, columns) of the ray grid."""
        return self.d.shape[1:]

    def windows(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Ray index ranges [r0, r1) x [c0, c1), (N, 4), that may hit boxes ``lo..hi`` (N, 3)."""
        raise NotImplementedError


@dataclass
class Hits:
    """Nearest hit per ray: t (R, C) float32 (inf = none), kind (R, C) int8, idx (R, C) int32."""

    t: np.ndarray
    kind: np.ndarray
    idx: np.ndarray


def cast(scene: StreetScene, rays: RayGrid, max_range: float = 1e9) -> Hits:
    """Nearest intersection of every ray with the scene (ground, boxes, cylinders, spheres)."""
    R, C = rays.shape
    o = rays.origin
    hits = Hits(np.full((R, C), np.inf, np.float32), np.zeros((R, C), np.int8),
                np.full((R, C), -1, np.int32))
    bufs = (hits.t, hits.kind, hits.idx)
    dx, dy, dz = rays.d
    with np.errstate(divide='ignore', invalid='ignore'):
        t = ((scene.cam_height - o[1]) / dy).astype(np.float32)
    _zwrite(bufs, (slice(None), slice(None)), t, (dy > 0) & (t > EPS_T), (GROUND, -1))
    z_lo, z_hi = o[2] - max_range, o[2] + max_range

    def todo(lo, hi):
        """Primitives within range and their ray windows."""
        near = np.flatnonzero((hi[:, 2] >= z_lo) & (lo[:, 2] <= z_hi))
        win = rays.windows(lo[near], hi[near])
        ok = (win[:, 1] > win[:, 0]) & (win[:, 3] > win[:, 2])
        return zip(near[ok], win[ok])

    inv = rays.inv
    for i, (r0, r1, c0, c1) in todo(scene.box_lo, scene.box_hi):
        lo, hi = scene.box_lo[i] - o, scene.box_hi[i] - o
        tmin = tmax = None
        with np.errstate(invalid='ignore'):
            for ax in range(3):
                iv = inv[ax, r0:r1, c0:c1]
                t1, t2 = np.float32(lo[ax]) * iv, np.float32(hi[ax]) * iv
                a, b = np.minimum(t1, t2), np.maximum(t1, t2)
                tmin = a if tmin is None else np.maximum(tmin, a)
                tmax = b if tmax is None else np.minimum(tmax, b)
            ok = (tmax >= tmin) & (tmin > EPS_T)
        _zwrite(bufs, (slice(r0, r1), slice(c0, c1)), tmin, ok, (BOX, i))

    # Quadratics in the numerically stable form disc = |d|^2 r^2 - |(o - centre) x d|^2.
    cyl = scene.cyl
    for i, (r0, r1, c0, c1) in todo(*_cylinder_boxes(cyl)):
        x, z, r, y0, y1 = (float(c) for c in cyl[i])
        win = (slice(r0, r1), slice(c0, c1))
        ddx, ddz = dx[win], dz[win]
        ox, oz = float(o[0]) - x, float(o[2]) - z
        a = rays.a_xz[win]
        with np.errstate(invalid='ignore'):
            t = (-(ox * ddx + oz * ddz) - np.sqrt(a * (r * r) - (ox * ddz - oz * ddx) ** 2)) / a
            y = float(o[1]) + t * dy[win]
            ok = (t > EPS_T) & (y >= y0) & (y <= y1)
        _zwrite(bufs, win, t, ok, (CYLINDER, i))

    sph = scene.sph
    for i, (r0, r1, c0, c1) in todo(sph[:, :3] - sph[:, 3:], sph[:, :3] + sph[:, 3:]):
        win = (slice(r0, r1), slice(c0, c1))
        ox, oy, oz = (float(c) for c in o - sph[i, :3])
        r = float(sph[i, 3])
        ddx, ddy, ddz = dx[win], dy[win], dz[win]
        a = rays.a_all[win]
        cross2 = (oy * ddz - oz * ddy) ** 2 + (oz * ddx - ox * ddz) ** 2 \
            + (ox * ddy - oy * ddx) ** 2
        with np.errstate(invalid='ignore'):
            t = (-(ox * ddx + oy * ddy + oz * ddz) - np.sqrt(a * (r * r) - cross2)) / a
            ok = t > EPS_T
        _zwrite(bufs, win, t, ok, (SPHERE, i))
    return hits
