// The v2m4 viewer (OUT/viewer.html): the input frames and the animated mesh side by side on one timeline.
// Bundled with three.js by tools/build_viewer.js into v2m4/export/_three_bundle.js; v2m4/export/viewer.py writes
// the page around it, with the run's data (GLB, frames, camera, per-frame IoU) in <script id="v2m4-data">.
// window.v2m4 is the page's scripting hook (the browser tests drive it): setTime, play, pause, setMode, capture.
import {
  AmbientLight, AnimationMixer, Box3, Color, DirectionalLight, LoopOnce, Matrix4, MeshBasicMaterial,
  MeshNormalMaterial, MeshStandardMaterial, PerspectiveCamera, Scene, Sphere, Vector3, WebGLRenderer,
} from "three";
import { GLTFLoader } from "three/examples/jsm/loaders/GLTFLoader.js";
import { OrbitControls } from "three/examples/jsm/controls/OrbitControls.js";

const $ = (id) => document.getElementById(id);

function decodeBase64(b64) {
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out.buffer;
}

// three.js's projection of our pinhole camera (v2m4.camera: OpenGL camera frame, pixel v downward, K in pixels)
function projection(K, width, height, near, far) {
  const [fx, cx, fy, cy] = [K[0][0], K[0][2], K[1][1], K[1][2]];
  return new Matrix4().set(
    2 * fx / width, 0, 1 - 2 * cx / width, 0,
    0, 2 * fy / height, 2 * cy / height - 1, 0,
    0, 0, -(far + near) / (far - near), -2 * far * near / (far - near),
    0, 0, -1, 0);
}

// the bounding sphere of every pose of the animation (rest + each morph target's offsets, or the skinned bones')
function animationBounds(root, pose, clip) {
  const box = new Box3();
  const steps = 16;
  for (let i = 0; i <= steps; i++) {
    pose(clip ? clip.duration * i / steps : 0);
    root.updateMatrixWorld(true);
    box.expandByObject(root, true);
  }
  return box.getBoundingSphere(new Sphere());
}

class Viewer {
  constructor(data, gltf) {
    this.data = data;
    this.times = data.times;
    this.t = this.times[0];
    this.playing = false;
    this.mode = "texture";
    this.wireframe = false;
    this.canvas = $("view");
    this.renderer = new WebGLRenderer({ canvas: this.canvas, antialias: true, preserveDrawingBuffer: true });
    this.renderer.setPixelRatio(window.devicePixelRatio || 1);
    this.scene = new Scene();
    this.scene.add(new AmbientLight(0xffffff, 1.2));
    const sun = new DirectionalLight(0xffffff, 2.0);
    sun.position.set(1, 2, 3);
    this.scene.add(sun);
    this.root = gltf.scene;
    this.scene.add(this.root);
    this.meshes = [];
    this.root.traverse((o) => {
      if (!o.isMesh) return;
      o.frustumCulled = false;  // morphs and skins move the mesh out of its rest bounds
      const src = o.material;
      const common = { vertexColors: src.vertexColors, side: src.side };
      o.userData.materials = {
        texture: new MeshBasicMaterial({ ...common, map: src.map }),  // the base colour as recorded, unlit
        // the base colour under this page's lights, as an engine shows the asset (the video's light is not in it)
        lit: new MeshStandardMaterial({ ...common, map: src.map, roughness: 0.8, metalness: 0.0 }),
        shaded: new MeshStandardMaterial({ color: 0xb8b8b8, roughness: 0.8, metalness: 0.0, side: src.side }),
        normals: new MeshNormalMaterial({ side: src.side }),
        silhouette: new MeshBasicMaterial({ color: 0xffffff, side: src.side }),
      };
      this.meshes.push(o);
    });
    this.mixer = new AnimationMixer(this.root);
    this.clip = gltf.animations[0] || null;
    if (this.clip) {
      this.action = this.mixer.clipAction(this.clip);
      this.action.setLoop(LoopOnce, 1);  // the last frame shows at the clip's end (a loop would wrap to the first)
      this.action.clampWhenFinished = true;
      this.action.play();
    }
    this.bounds = animationBounds(this.root, (t) => this.pose(t), this.clip);
    this.setupCamera();
    this.setMode("texture");
  }

  setupCamera() {
    const cam = this.data.camera;
    const [H, W] = cam.resolution;
    this.camera = new PerspectiveCamera();
    const worldFromCam = new Matrix4().fromArray(cam.cam_from_world.flat()).transpose().invert();
    this.worldFromCam = worldFromCam;
    const centre = new Vector3().setFromMatrixPosition(worldFromCam);
    const dist = Math.max(centre.distanceTo(this.bounds.center), 1e-6);
    const r = this.bounds.radius;
    const near = Math.max(dist - 4 * r, dist * 1e-3), far = dist + 4 * r + 1e-3;
    const P = projection(cam.K, W, H, near, far);
    this.camera.updateProjectionMatrix = function () {  // our camera's intrinsics, whatever the controls do
      this.projectionMatrix.copy(P);
      this.projectionMatrixInverse.copy(P).invert();
    };
    this.camera.updateProjectionMatrix();
    this.controls = new OrbitControls(this.camera, this.canvas);
    this.controls.addEventListener("change", () => this.render());
    this.aspect = W / H;
    this.resetView();
  }

  // the video's own camera, exactly (the controls orbit about the object's centre from there)
  resetView() {
    const m = this.worldFromCam;
    m.decompose(this.camera.position, this.camera.quaternion, this.camera.scale);
    this.camera.updateMatrixWorld(true);
    const forward = new Vector3(0, 0, -1).applyQuaternion(this.camera.quaternion);
    const depth = this.bounds.center.clone().sub(this.camera.position).dot(forward);
    this.controls.target.copy(this.camera.position).addScaledVector(forward, Math.max(depth, 1e-6));
    this.render();
  }

  setMode(mode) {
    this.mode = mode;
    for (const o of this.meshes) o.material = o.userData.materials[mode];
    if ([...$("mode").options].some((o) => o.value === mode)) $("mode").value = mode;
    this.setWireframe(this.wireframe && mode !== "silhouette");
    this.scene.background = new Color(mode === "silhouette" ? 0x000000 : 0x808080);
    this.render();
  }

  setWireframe(on) {
    this.wireframe = on;
    for (const o of this.meshes) for (const m of Object.values(o.userData.materials)) m.wireframe = on;
    this.render();
  }

  // the animation at time t, wherever it was before (a finished LoopOnce action pauses itself)
  pose(t) {
    if (!this.action) return;
    this.action.enabled = true;
    this.action.paused = false;
    this.action.time = t;
    this.mixer.update(0);
  }

  frameIndex(t = this.t) {
    let best = 0;
    for (let i = 1; i < this.times.length; i++) if (Math.abs(this.times[i] - t) < Math.abs(this.times[best] - t)) best = i;
    return best;
  }

  setTime(t) {
    const t0 = this.times[0], t1 = this.times[this.times.length - 1];
    this.t = Math.min(Math.max(t, t0), t1);
    this.pose(this.t);
    const i = this.frameIndex();
    if (this.data.frames && this.data.frames[i]) $("frame").src = this.data.frames[i];
    $("scrub").value = String(this.t);
    $("clock").textContent = `${this.t.toFixed(2)} s · frame ${i + 1}/${this.times.length}`;
    drawPlot(this.data, i);
    this.render();
  }

  resize() {
    const w = Math.max(64, Math.floor($("panes").clientWidth / 2 - 8));
    const size = [Math.min(w, 640), Math.round(Math.min(w, 640) / this.aspect)];
    this.renderer.setSize(size[0], size[1], true);
    $("frame").style.width = `${size[0]}px`;
    $("frame").style.height = `${size[1]}px`;
    this.render();
  }

  render() {
    this.renderer.render(this.scene, this.camera);
  }

  // the canvas as a PNG data URL right after a render (for the tests and for saving a view)
  capture() {
    this.render();
    return this.canvas.toDataURL("image/png");
  }

  play() {
    if (this.playing) return;
    this.playing = true;
    $("play").textContent = "pause";
    let last = performance.now();
    const tick = (now) => {
      if (!this.playing) return;
      const t0 = this.times[0], t1 = this.times[this.times.length - 1];
      let t = this.t + (now - last) / 1000;
      last = now;
      if (t > t1) t = t0 + (t - t1) % Math.max(t1 - t0, 1e-6);
      this.setTime(t);
      requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
  }

  pause() {
    this.playing = false;
    $("play").textContent = "play";
  }
}

// the per-frame input-view mask IoU under the timeline, with the current frame marked
function drawPlot(data, index) {
  const c = $("plot");
  const ious = data.iou || [];
  const g = c.getContext("2d");
  const w = c.width = c.clientWidth || 600, h = c.height = c.clientHeight || 80;
  g.clearRect(0, 0, w, h);
  if (!ious.length) return;
  const lo = Math.min(0.9, Math.max(0, Math.floor((Math.min(...ious) - 0.02) * 20) / 20)), pad = 4;
  const x = (i) => pad + (w - 2 * pad) * (ious.length > 1 ? i / (ious.length - 1) : 0.5);
  const y = (v) => h - pad - (h - 2 * pad) * (v - lo) / (1 - lo);
  g.strokeStyle = "#ccc";
  g.beginPath(); g.moveTo(pad, y(1)); g.lineTo(w - pad, y(1)); g.stroke();
  g.strokeStyle = "#2b7bd6"; g.lineWidth = 2;
  g.beginPath();
  ious.forEach((v, i) => (i ? g.lineTo(x(i), y(v)) : g.moveTo(x(i), y(v))));
  g.stroke();
  g.strokeStyle = "#d62b2b"; g.lineWidth = 1;
  g.beginPath(); g.moveTo(x(index), 0); g.lineTo(x(index), h); g.stroke();
  g.fillStyle = "#333"; g.font = "11px sans-serif";
  g.fillText(`IoU ${ious[index] !== undefined ? ious[index].toFixed(3) : "-"} (axis ${lo.toFixed(2)}–1)`, pad + 2, 12);
}

function wire(viewer) {
  const times = viewer.times;
  const scrub = $("scrub");
  scrub.min = String(times[0]);
  scrub.max = String(times[times.length - 1]);
  scrub.step = String(times.length > 1 ? (times[times.length - 1] - times[0]) / (times.length - 1) / 4 : 0.01);
  scrub.addEventListener("input", () => { viewer.pause(); viewer.setTime(parseFloat(scrub.value)); });
  $("play").addEventListener("click", () => (viewer.playing ? viewer.pause() : viewer.play()));
  $("mode").addEventListener("change", () => viewer.setMode($("mode").value));
  $("wire").addEventListener("change", () => viewer.setWireframe($("wire").checked));
  $("reset").addEventListener("click", () => viewer.resetView());
  $("plot").addEventListener("click", (e) => {
    const r = $("plot").getBoundingClientRect();
    const i = Math.round((e.clientX - r.left) / r.width * (times.length - 1));
    viewer.pause();
    viewer.setTime(times[Math.min(Math.max(i, 0), times.length - 1)]);
  });
  window.addEventListener("resize", () => viewer.resize());
}

function start() {
  const data = JSON.parse($("v2m4-data").textContent);
  const hook = { ready: false, error: null };
  window.v2m4 = hook;
  new GLTFLoader().parse(decodeBase64(data.glb), "", (gltf) => {
    const viewer = new Viewer(data, gltf);
    wire(viewer);
    viewer.resize();
    viewer.setTime(viewer.times[0]);
    Object.assign(hook, {
      viewer, times: viewer.times, duration: viewer.times[viewer.times.length - 1] - viewer.times[0],
      setTime: (t) => viewer.setTime(t), time: () => viewer.t, frameIndex: () => viewer.frameIndex(),
      play: () => viewer.play(), pause: () => viewer.pause(), playing: () => viewer.playing,
      setMode: (m) => viewer.setMode(m), setWireframe: (b) => viewer.setWireframe(b),
      resetView: () => viewer.resetView(), capture: () => viewer.capture(), ready: true,
    });
  }, (err) => {
    hook.error = String(err && err.message || err);
    $("clock").textContent = `could not read the animation: ${hook.error}`;
    console.error(hook.error);
  });
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
else start();
