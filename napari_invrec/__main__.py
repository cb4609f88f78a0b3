"""``python -m napari_invrec``: open napari with the plugin's widgets and a sample loaded."""

from napari_invrec._widgets.launch import main

if __name__ == "__main__":
    main()
