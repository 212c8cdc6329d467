"""install_caffe_alias(): unmodified pycaffe code (``import caffe``) runs on netdef, on
request only; a real Caffe is never shadowed silently."""

import subprocess
import sys
import textwrap


def _run(code, tmp_path):
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(code))
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=120, cwd=str(tmp_path))


def test_alias_serves_pycaffe_imports(tmp_path):
    done = _run("""
        import netdef
        netdef.install_caffe_alias()
        import caffe
        import caffe.io
        from caffe.proto import caffe_pb2
        from caffe import layers as L, params as P
        from caffe.coord_map import crop
        assert caffe is netdef and caffe.io is netdef.io
        assert caffe_pb2.NetParameter is netdef.proto.caffe_pb2.NetParameter
        assert netdef.install_caffe_alias() is netdef  # twice is fine
        print("ok")
    """, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_a_real_caffe_is_not_shadowed_without_force(tmp_path):
    (tmp_path / "caffe").mkdir()
    (tmp_path / "caffe" / "__init__.py").write_text("REAL = True\n")
    done = _run("""
        import sys
        sys.path.insert(0, ".")
        import netdef
        try:
            netdef.install_caffe_alias()
        except RuntimeError as exc:
            print("refused:", "force=True" in str(exc))
        import caffe
        print("real" if getattr(caffe, "REAL", False) else "netdef")
        del sys.modules["caffe"]
        netdef.install_caffe_alias(force=True)
        import caffe
        print("real" if getattr(caffe, "REAL", False) else "netdef")
    """, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:3] == ["refused: True", "real", "netdef"]


def test_python_layer_module_that_imports_caffe_loads_through_the_cli(tmp_path):
    """A layer module written for pycaffe (``import caffe``; ``caffe.Layer``) needs no edit."""
    (tmp_path / "double_layer.py").write_text(textwrap.dedent("""
        import caffe

        class Double(caffe.Layer):
            def setup(self, bottom, top):
                pass

            def reshape(self, bottom, top):
                top[0].reshape(*bottom[0].data.shape)

            def forward(self, bottom, top):
                top[0].data[...] = 2 * bottom[0].data

            def backward(self, top, propagate_down, bottom):
                bottom[0].diff[...] = 2 * top[0].diff
    """))
    (tmp_path / "net.prototxt").write_text(textwrap.dedent("""
        layer { name: "data" type: "Input" top: "data"
                input_param { shape { dim: 2 dim: 3 } } }
        layer { name: "double" type: "Python" bottom: "data" top: "out"
                python_param { module: "double_layer" layer: "Double" } }
    """))
    done = _run("""
        import sys
        import netdef
        net = netdef.Net("net.prototxt", netdef.TEST)
        net.blobs["data"].data[...] = 1.5
        print(float(net.forward()["out"].sum()), sys.modules["caffe"] is netdef)
    """, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["18.0", "True"]
