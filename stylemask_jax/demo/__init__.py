"""`stylemask demo`: a local web page (Gradio) for reenacting uploaded photos and videos.

    engine = make_engine(models, encoder, e4e_vars, DemoSettings(...))   # loaded networks
    engine.compile()                      # every jitted function, once, at start-up (logged)
    app = build_app(engine)               # gradio.Blocks; app.launch(server_name="127.0.0.1")

engine.py   the models, the jitted functions (compiled per batch size at start-up) and the two
            request paths (photo pairs in batches, a driving video with progress)
batcher.py  requests arriving together run as one batch (a queue and a worker thread)
views.py    the pictures the page shows: source | target | reenacted strip, mask heat-maps
app.py      the page (Gradio Blocks) and its request functions: errors become page messages
tiny.py     random networks that fit together (--config tiny), for tests and a first look
"""
